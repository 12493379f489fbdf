//! The master behind Redis Sentinel ([`SentinelMaster`]): asked of the Sentinels when first
//! needed and kept while it answers. It is asked for again after it fails, hangs or turns
//! replica (`READONLY`), and when a Sentinel reports another master: a task asks one every
//! [`SENTINEL_CHECK_INTERVAL`], so after a failover the old master (which may accept writes
//! for a moment before it is demoted) is left within that time.
//!
//! Written over the redis crate's `SentinelClient`, which finds and checks the master (`ROLE`)
//! but keeps no connection and does not watch for failovers: what to drop and when is ours.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError, RedisResult,
    ServerErrorKind, TlsCertificates, TlsMode,
};

/// How often a Sentinel is asked which node is master (0.5 s).
pub(crate) const SENTINEL_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The master a set of Sentinels reports for one name, with a connection to it while it lasts.
pub(super) struct SentinelMaster {
    name: String,
    urls: Vec<String>,
    sentinels: tokio::sync::Mutex<SentinelClient>,
    /// The master's connection and address, while they last.
    held: Mutex<Option<(MultiplexedConnection, ConnectionAddr)>>,
    connect: AsyncConnectionConfig,
    /// Whether the task that follows failovers runs.
    watching: std::sync::Once,
    /// With `rediss://`: the CA and client certificate, for the watcher's Sentinel connection.
    tls: Option<TlsCertificates>,
}

impl SentinelMaster {
    /// Sentinels at `urls` watching `master`; the user, password and database of the first URL
    /// are also used for the master, and with `rediss://` URLs TLS (with `tls`'s CA and client
    /// certificate) to the Sentinels and to the master. Connects to nothing yet.
    pub(super) fn new(
        master: &str,
        urls: &[String],
        tls: Option<TlsCertificates>,
        timeout: Duration,
    ) -> RedisResult<Self> {
        let infos = urls
            .iter()
            .map(|url| url.as_str().into_connection_info())
            .collect::<RedisResult<Vec<_>>>()?;
        let first = infos
            .first()
            .ok_or_else(|| RedisError::from((ErrorKind::InvalidClientConfig, "no sentinel URL")))?
            .redis_settings()
            .clone();
        let mut builder = SentinelClientBuilder::new(
            infos.iter().map(|info| info.addr().clone()),
            master,
            SentinelServerType::Master,
        )?
        .set_client_to_redis_db(first.db());
        if let Some(user) = first.username() {
            builder = builder
                .set_client_to_redis_username(user)
                .set_client_to_sentinel_username(user);
        }
        if let Some(password) = first.password() {
            builder = builder
                .set_client_to_redis_password(password)
                .set_client_to_sentinel_password(password);
        }
        if let Some(certificates) = &tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_redis_certificates(certificates.clone())
                .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_certificates(certificates.clone());
        }
        let sentinels = builder.build()?;
        Ok(Self {
            name: master.to_owned(),
            urls: urls.to_vec(),
            tls,
            sentinels: tokio::sync::Mutex::new(sentinels),
            held: Mutex::new(None),
            connect: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
                .set_response_timeout(Some(timeout)),
            watching: std::sync::Once::new(),
        })
    }

    /// A connection to the master: the one held, or a new one to the master the Sentinels
    /// report now. The first call starts the task that follows failovers.
    pub(super) async fn connection(self: &Arc<Self>) -> RedisResult<MultiplexedConnection> {
        self.watching.call_once(|| {
            tokio::spawn(watch(Arc::downgrade(self)));
        });
        if let Some((conn, _)) = self.lock().clone() {
            return Ok(conn);
        }
        // One caller asks the Sentinels; the others wait for its answer, then find it held.
        let mut sentinels = self.sentinels.lock().await;
        if let Some((conn, _)) = self.lock().clone() {
            return Ok(conn);
        }
        let client = sentinels.async_get_client().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.connect)
            .await?;
        let addr = client.get_connection_info().addr().clone();
        *self.lock() = Some((conn.clone(), addr));
        Ok(conn)
    }

    /// After a call on a connection from [`Self::connection`] failed with `error` (`None`: no
    /// answer in time): when that means the master is gone, hangs, or is one no longer
    /// (`READONLY` after a failover), the next call asks the Sentinels again.
    pub(super) fn failed(&self, error: Option<&RedisError>) {
        if error.is_none_or(|e| {
            e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        }) {
            *self.lock() = None;
        }
    }

    /// Asks a Sentinel which node is master (through `asked`, a connection to one, made or
    /// replaced as needed); forgets the held master if it is another.
    async fn check(&self, asked: &mut Option<MultiplexedConnection>) {
        if asked.is_none() {
            *asked = self.any_sentinel().await;
        }
        let Some(sentinel) = asked.as_mut() else {
            return;
        };
        let reported: RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.name)
            .query_async(sentinel)
            .await;
        let Ok(Some((host, port))) = reported else {
            // This Sentinel failed or does not know the master: ask another next time.
            *asked = None;
            return;
        };
        let mut held = self.lock();
        let moved = held.as_ref().is_some_and(|(_, addr)| match addr {
            ConnectionAddr::Tcp(h, p)
            | ConnectionAddr::TcpTls {
                host: h, port: p, ..
            } => *h != host || *p != port,
            // Sentinels report TCP addresses; a master reached otherwise is left as it is.
            _ => false,
        });
        if moved {
            *held = None;
        }
    }

    /// A connection to the first Sentinel that takes one.
    async fn any_sentinel(&self) -> Option<MultiplexedConnection> {
        for url in &self.urls {
            let client = match &self.tls {
                Some(certificates) => {
                    redis::Client::build_with_tls(url.as_str(), certificates.clone())
                }
                None => redis::Client::open(url.as_str()),
            };
            let Ok(client) = client else {
                continue;
            };
            let conn = client
                .get_multiplexed_async_connection_with_config(&self.connect)
                .await;
            if let Ok(conn) = conn {
                return Some(conn);
            }
        }
        None
    }

    fn lock(&self) -> MutexGuard<'_, Option<(MultiplexedConnection, ConnectionAddr)>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Follows failovers until the master's last user is gone.
async fn watch(master: Weak<SentinelMaster>) {
    let mut asked = None;
    let mut tick = tokio::time::interval(SENTINEL_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(master) = master.upgrade() else {
            return;
        };
        let timeout = SENTINEL_CHECK_INTERVAL;
        let _ = tokio::time::timeout(timeout, master.check(&mut asked)).await;
    }
}
