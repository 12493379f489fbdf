//! The Redis connection shared limits use ([`Redis`]): one multiplexed connection to a server,
//! a cluster connection that follows `MOVED`/`ASK`, or the master Sentinel reports; each call
//! bounded by `redis.timeout`, and the errors that mean Redis gave no answer.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{ClientTlsConfig, Cmd, IntoConnectionInfo, Script, TlsCertificates};

use super::sentinel::SentinelMaster;
use crate::limit::config::{RedisConfig, RedisTls, RedisTopology};
use crate::limit::shared::scripts::{RELEASE, RENEW, SYNC, TAKE};

/// The scripts' text, by index: `TAKE`, `RENEW`, `RELEASE`, `SYNC`.
const CODES: [&str; 4] = [TAKE, RENEW, RELEASE, SYNC];

/// Why Redis gave no answer.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum RedisError {
    /// No answer within `redis.timeout`.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// `limits.batch`: the last flush did not reach Redis, so a view too old to use is not
    /// read again (each request would wait `redis.timeout`) until one does.
    #[error("redis did not take the last batched counts")]
    Stale,
    /// An error from the client or the server.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The Redis connection every shared limit of a generation uses.
#[derive(Clone)]
pub struct Redis {
    pub(super) config: RedisConfig,
    conn: Conn,
    /// `TAKE`, `RENEW`, `RELEASE`, `SYNC`, by index.
    scripts: Arc<[Script; 4]>,
    /// Lease ids: a random per-process prefix and a counter.
    pub(super) process: u64,
    pub(super) leases: Arc<AtomicU64>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the config: its URLs may hold passwords, its TLS block a private key.
        let topology = match &self.config.topology {
            RedisTopology::Single(_) => "server",
            RedisTopology::Cluster(_) => "cluster",
            RedisTopology::Sentinel { .. } => "sentinel",
        };
        f.debug_struct("Redis")
            .field("topology", &topology)
            .field("tls", &self.config.tls.is_some())
            .field("timeout", &self.config.timeout)
            .finish_non_exhaustive()
    }
}

/// How calls reach Redis, by topology. Each reconnects on its own.
#[derive(Clone)]
enum Conn {
    /// One server, reconnected by the connection manager.
    Single(ConnectionManager),
    /// A cluster: the slot map is learnt from the seed nodes and refreshed on `MOVED`.
    Cluster(ClusterConnection),
    /// The master the Sentinels report, asked again after it fails.
    Sentinel(Arc<SentinelMaster>),
}

impl Conn {
    /// A lazily connecting client for `config` (the first call connects; needs a Tokio runtime
    /// for Sentinel and the cluster).
    fn new(config: &RedisConfig) -> Result<Self, redis::RedisError> {
        let connect = config.timeout.max(Duration::from_millis(250));
        Ok(match &config.topology {
            RedisTopology::Single(url) => {
                let info = url
                    .as_str()
                    .into_connection_info()?
                    .set_tcp_settings(nodelay());
                let client = match &config.tls {
                    Some(tls) => redis::Client::build_with_tls(info, certificates(tls))?,
                    None => redis::Client::open(info)?,
                };
                // No response timeout of its own: [`Redis::run`] bounds each call already, and
                // a second timer a call would wake the runtime's driver once more (a timer
                // earlier than any other unparks it).
                let manager = ConnectionManagerConfig::new()
                    .set_response_timeout(None)
                    .set_connection_timeout(Some(connect))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Self::Single(ConnectionManager::new_lazy_with_config(client, manager)?)
            }
            RedisTopology::Cluster(urls) => {
                // Redirects (`MOVED`, `ASK`) and reconnects are retried quickly; the call as a
                // whole is bounded by `redis.timeout` all the same.
                let mut builder = ClusterClient::builder(urls.iter().map(String::as_str))
                    .retries(3)
                    .min_retry_wait(10)
                    .max_retry_wait(100)
                    .tcp_settings(nodelay());
                // TLS itself comes with rediss:// seeds; these are its CA and client identity.
                if let Some(tls) = &config.tls {
                    builder = builder.certs(certificates(tls));
                }
                let client = builder.build()?;
                let settings = ClusterConfig::new()
                    .set_connection_timeout(connect)
                    .set_response_timeout(config.timeout);
                Self::Cluster(client.get_pending_async_connection_with_config(settings))
            }
            RedisTopology::Sentinel { master, urls } => {
                let tls = config.tls.as_ref().map(certificates);
                Self::Sentinel(Arc::new(SentinelMaster::new(
                    master,
                    urls,
                    tls,
                    config.timeout,
                )?))
            }
        })
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, redis::RedisError> {
        match self {
            Self::Single(conn) => cmd.query_async(&mut conn.clone()).await,
            Self::Cluster(conn) => cmd.query_async(&mut conn.clone()).await,
            Self::Sentinel(master) => {
                let (mut conn, generation) = master.connection().await?;
                let answer = cmd.query_async(&mut conn).await;
                if let Err(error) = &answer {
                    master.failed(generation, error);
                }
                answer
            }
        }
    }
}

/// TCP without Nagle's delay: a call waits for its answer, and calls of concurrent requests
/// follow each other on one connection, where Nagle would hold each small write back until
/// the one before is acknowledged (the redis crate leaves it on by default).
pub(super) fn nodelay() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

/// `redis.tls` as the redis crate takes it: without a CA, the system's trust store.
fn certificates(tls: &RedisTls) -> TlsCertificates {
    TlsCertificates {
        client_tls: tls.client.as_ref().map(|identity| ClientTlsConfig {
            client_cert: identity.pem.0.clone(),
            client_key: identity.pem.1.clone(),
        }),
        root_cert: tls.ca.as_ref().map(|roots| roots.pem.to_vec()),
    }
}

impl Redis {
    /// A lazily connecting client (the first request connects; needs a Tokio runtime).
    pub fn new(config: RedisConfig) -> Result<Self, redis::RedisError> {
        let conn = Conn::new(&config)?;
        Ok(Self {
            config,
            conn,
            scripts: Arc::new(CODES.map(Script::new)),
            process: RandomState::new().hash_one(std::process::id()),
            leases: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The settings it was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Runs script `script` (by index) on `keys` and `args`.
    pub(super) async fn run<T: redis::FromRedisValue>(
        &self,
        script: usize,
        keys: &[String],
        args: &[String],
    ) -> Result<T, RedisError> {
        self.eval(script, |cmd| {
            cmd.arg(keys.len()).arg(keys).arg(args);
        })
        .await
    }

    /// Runs script `script` with the key count, keys and arguments `write` appends, by its
    /// hash (`EVALSHA`), or by its text (`EVAL`, which also loads it, on the node the keys
    /// are on) when Redis does not have it yet. Bounded by `redis.timeout` as a whole.
    ///
    /// `EVAL` rather than `SCRIPT LOAD`: redis-rs sends a load to every node of a cluster,
    /// replicas too, and one that cannot answer would fail the call; Redis 7.4 may evict a
    /// script `EVAL` loaded when thousands are, and the next call loads it again.
    ///
    /// By hand rather than the crate's `ScriptInvocation`, which copies every key and
    /// argument into buffers of its own before it builds the same command: this writes
    /// them, numbers included, into the command's one buffer.
    pub(super) async fn eval<T: redis::FromRedisValue>(
        &self,
        script: usize,
        write: impl Fn(&mut Cmd),
    ) -> Result<T, RedisError> {
        let call = async {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(self.scripts[script].get_hash());
            write(&mut cmd);
            match self.conn.query(&cmd).await {
                Err(error)
                    if error.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(CODES[script]);
                    write(&mut cmd);
                    self.conn.query(&cmd).await
                }
                answer => answer,
            }
        };
        match tokio::time::timeout(self.config.timeout, call).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(RedisError::Timeout(self.config.timeout)),
        }
    }
}
