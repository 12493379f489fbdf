//! The master behind Redis Sentinel ([`SentinelMaster`]), kept while it answers.
//!
//! - **Found in the background.** The Sentinels are asked in a task of its own, with its own
//!   deadline ([`SENTINEL_LOOKUP_DEADLINE`]): a request waits for the answer within its own
//!   `redis.timeout` and may give up, but the lookup goes on, so a slow or dead Sentinel never
//!   keeps the master from being found.
//! - **Dropped when it fails.** A connection error or `READONLY` (a master turned replica)
//!   drops the connection it happened on — only that one, not a newer one another request made.
//! - **Followed through failovers.** A task asks one Sentinel every
//!   [`SENTINEL_CHECK_INTERVAL`] which node is master (the next Sentinel after one fails) and
//!   drops a master that is no longer the one reported: after a failover the old master may
//!   accept writes for a moment before it is demoted.
//!
//! Written over the redis crate's `SentinelClient`, which finds and checks the master (`ROLE`)
//! but keeps no connection and does not watch for failovers: what to drop and when is ours.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisError, RedisResult, ServerErrorKind, TlsCertificates, TlsMode,
};
use tokio::sync::watch;

/// How often a Sentinel is asked which node is master (0.5 s).
pub(crate) const SENTINEL_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Longest one lookup of the master may take, every Sentinel tried in turn (5 s).
pub(crate) const SENTINEL_LOOKUP_DEADLINE: Duration = Duration::from_secs(5);

/// The master's connection while it lasts, and which one it is.
struct Held {
    conn: MultiplexedConnection,
    addr: ConnectionAddr,
    generation: u64,
}

/// The master a set of Sentinels reports for one name, with a connection to it while it lasts.
pub(super) struct SentinelMaster {
    name: String,
    /// The Sentinels, without a database (a Sentinel has none).
    sentinels: Vec<ConnectionInfo>,
    lookup: tokio::sync::Mutex<SentinelClient>,
    held: Mutex<Option<Held>>,
    /// Bumped when a master is found: requests waiting for one watch it.
    found: watch::Sender<u64>,
    looking: AtomicBool,
    generations: AtomicU64,
    /// The Sentinel the follower asks next.
    next: AtomicUsize,
    /// How the master is connected to.
    connect: AsyncConnectionConfig,
    /// How the Sentinels are.
    ask: AsyncConnectionConfig,
    watching: std::sync::Once,
    /// With `rediss://`: the CA and client certificate, for the follower's connections.
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
        .set_client_to_redis_db(first.db())
        .set_client_to_redis_tcp_settings(super::connection::nodelay());
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
        let sentinels = infos
            .into_iter()
            .map(|info| {
                let settings = info.redis_settings().clone().set_db(0);
                info.set_redis_settings(settings)
            })
            .collect();
        Ok(Self {
            name: master.to_owned(),
            sentinels,
            lookup: tokio::sync::Mutex::new(builder.build()?),
            held: Mutex::new(None),
            found: watch::Sender::new(0),
            looking: AtomicBool::new(false),
            generations: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            // The master's calls are bounded by `Redis::run` (a second timer would cost a
            // wake-up); the Sentinels' by their own.
            connect: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
                .set_response_timeout(None),
            ask: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
                .set_response_timeout(Some(timeout.max(Duration::from_millis(250)))),
            watching: std::sync::Once::new(),
            tls,
        })
    }

    /// A connection to the master and its generation (for [`Self::failed`]): the one held, or
    /// the next one the lookup finds. The caller's own deadline bounds the wait; the lookup
    /// goes on without it. The first call starts the task that follows failovers.
    pub(super) async fn connection(self: &Arc<Self>) -> RedisResult<(MultiplexedConnection, u64)> {
        self.watching.call_once(|| {
            tokio::spawn(follow(Arc::downgrade(self)));
        });
        let mut found = self.found.subscribe();
        if let Some(held) = self.lock().as_ref() {
            return Ok((held.conn.clone(), held.generation));
        }
        if !self.looking.swap(true, Ordering::AcqRel) {
            tokio::spawn(look_up(Arc::clone(self)));
        }
        // One lookup's outcome; a failed one is this call's failure (the next call asks again).
        let _ = found.changed().await;
        match self.lock().as_ref() {
            Some(held) => Ok((held.conn.clone(), held.generation)),
            None => Err(RedisError::from((
                ErrorKind::Io,
                "no master from the sentinels",
            ))),
        }
    }

    /// After a call on the connection of `generation` failed with `error`: when that means the
    /// master is gone or is one no longer (`READONLY` after a failover), that connection is
    /// dropped and the next call looks the master up again.
    pub(super) fn failed(&self, generation: u64, error: &RedisError) {
        // A slow answer is not a gone master (the follower sees a failover).
        let gone = (error.is_io_error() && !error.is_timeout())
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
            // Redis 6.2 wraps a script's refused write in a script error.
            || error.to_string().contains("READONLY");
        let mut held = self.lock();
        if gone && held.as_ref().is_some_and(|h| h.generation == generation) {
            *held = None;
        }
    }

    /// Asks the Sentinels (in turn, as the redis crate does) for the master, connects to it
    /// and holds the connection.
    async fn find(&self) -> RedisResult<()> {
        let mut lookup = self.lookup.lock().await;
        if self.lock().is_some() {
            return Ok(());
        }
        let client = lookup.async_get_client().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.connect)
            .await?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *self.lock() = Some(Held {
            conn,
            addr: client.get_connection_info().addr().clone(),
            generation,
        });
        Ok(())
    }

    /// Asks one Sentinel (through `asked`, a connection to one, made as needed) which node is
    /// master; drops the held master if it is another.
    async fn check(&self, asked: &mut Option<MultiplexedConnection>) {
        if asked.is_none() {
            *asked = self.next_sentinel().await;
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
            // This Sentinel failed or does not know the master: ask the next one next time.
            *asked = None;
            return;
        };
        let mut held = self.lock();
        let moved = held.as_ref().is_some_and(|h| match &h.addr {
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

    /// A connection to the next Sentinel in turn (one try a check, so a dead one costs one
    /// check, not every one).
    async fn next_sentinel(&self) -> Option<MultiplexedConnection> {
        let at = self.next.fetch_add(1, Ordering::Relaxed) % self.sentinels.len().max(1);
        let info = self.sentinels.get(at)?.clone();
        let client = match &self.tls {
            Some(certificates) => redis::Client::build_with_tls(info, certificates.clone()),
            None => redis::Client::open(info),
        };
        client
            .ok()?
            .get_multiplexed_async_connection_with_config(&self.ask)
            .await
            .ok()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One lookup of the master, within [`SENTINEL_LOOKUP_DEADLINE`]; wakes the waiting requests
/// whatever its outcome (they try again, or fail within their own deadline).
async fn look_up(master: Arc<SentinelMaster>) {
    let found = tokio::time::timeout(SENTINEL_LOOKUP_DEADLINE, master.find()).await;
    if !matches!(found, Ok(Ok(()))) {
        tracing::debug!(master = %master.name, "no master from the sentinels this time");
    }
    master.looking.store(false, Ordering::Release);
    master.found.send_modify(|n| *n += 1);
}

/// Follows failovers until the master's last user is gone.
async fn follow(master: Weak<SentinelMaster>) {
    let mut asked = None;
    let mut tick = tokio::time::interval(SENTINEL_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(master) = master.upgrade() else {
            return;
        };
        // Each step is bounded by the Sentinel connection's own timeouts.
        master.check(&mut asked).await;
    }
}
