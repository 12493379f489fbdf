//! The Redis connection shared limits use ([`Redis`]): one multiplexed connection, each call
//! bounded by `redis.timeout`, and the errors that mean Redis gave no answer.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::limit::config::RedisConfig;
use crate::limit::shared::scripts::{RELEASE, RENEW, TAKE};

/// Why Redis gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisError {
    /// No answer within `redis.timeout`.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// An error from the client or the server.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The Redis connection every shared limit of a generation uses.
#[derive(Clone)]
pub struct Redis {
    pub(super) config: RedisConfig,
    conn: ConnectionManager,
    scripts: Arc<[Script; 3]>,
    /// Lease ids: a random per-process prefix and a counter.
    pub(super) process: u64,
    pub(super) leases: Arc<AtomicU64>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// A lazily connecting client (the first request connects; needs a Tokio runtime).
    pub fn new(config: RedisConfig) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.timeout))
            .set_connection_timeout(Some(config.timeout.max(Duration::from_millis(250))))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)?;
        Ok(Self {
            config,
            conn,
            scripts: Arc::new([Script::new(TAKE), Script::new(RENEW), Script::new(RELEASE)]),
            process: RandomState::new().hash_one(std::process::id()),
            leases: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The settings it was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    pub(super) async fn run<T: redis::FromRedisValue>(
        &self,
        script: usize,
        keys: &[String],
        args: &[String],
    ) -> Result<T, RedisError> {
        let mut invocation = self.scripts[script].prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.config.timeout, invocation.invoke_async(&mut conn)).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(RedisError::Timeout(self.config.timeout)),
        }
    }
}
