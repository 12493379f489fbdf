//! What operators do to a running server ([`Handle`]): reload a config (given, or read again
//! from its [`Source`]), and drain. SIGHUP, the admin listener's verbs and tests all come here.

use std::path::PathBuf;
use std::sync::Arc;

use super::shutdown::Drain;
use crate::config::{Config, ConfigError};
use crate::proxy::generation::{BuildError, Generation};
use crate::proxy::router::Current;
use crate::telemetry::Metrics;

/// Why a reload was refused; the running generation stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not validate: its problems, as `check` prints them.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// Settings that belong to the listener changed: their keys.
    #[error(
        "{} cannot change while pagegate runs: restart it to apply that change",
        keys(.0)
    )]
    Fixed(Vec<&'static str>),
    /// The new config does not build.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A table route does not fit its table, as its database's catalog says (a start would
    /// refuse it too).
    #[error("{reason} (route `{route}`)")]
    Table {
        /// The route.
        route: String,
        /// What to change.
        reason: String,
    },
    /// A certificate would be replaced by one that cannot be presented now.
    #[error(
        "the certificate of {name} in {file} {why}, while the running one is valid: give a valid certificate; the running one stays"
    )]
    Certificate {
        /// Where it is used (`listener`, `upstreams.NAME`, `rate_limit_service`).
        name: String,
        /// Its file.
        file: String,
        /// Expired or not yet valid, and when.
        why: String,
    },
    /// The reload itself failed (a bug): the running generation stays.
    #[error("the reload failed unexpectedly ({0}); the running config stays")]
    Failed(String),
    /// The server was started from a config given in code, with no file to read again.
    #[error("pagegate was started without a config file, so there is none to read again")]
    NoSource,
}

/// `a`, `` `a` and `b` ``, `` `a`, `b` and `c` ``.
fn keys(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

/// What changes the file's settings once read (the command line's `--listen`, say), applied to
/// every reload too, so a reload compares like with like.
pub type Overrides = Box<dyn Fn(&mut Config) + Send + Sync>;

/// Where reloads read the config: a file, with the command line's overrides.
pub struct Source {
    path: PathBuf,
    overrides: Overrides,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("path", &self.path).finish()
    }
}

impl Source {
    /// The file at `path`, with `overrides` applied to each read.
    pub fn new(path: PathBuf, overrides: Overrides) -> Self {
        Self { path, overrides }
    }

    /// The file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Reads and validates the file, and applies the overrides.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = Config::load(&self.path)?;
        (self.overrides)(&mut config);
        Ok(config)
    }
}

/// Reloads and drains a running server.
#[derive(Debug, Clone)]
pub struct Handle {
    pub(super) current: Current,
    pub(super) metrics: Arc<Metrics>,
    pub(super) drain: Arc<Drain>,
    pub(super) source: Option<Arc<Source>>,
    /// Held while a reload builds and swaps, so SIGHUP, the watcher and `POST /reload` never
    /// race: two at once would each build from the same previous generation.
    pub(super) reloading: Arc<std::sync::Mutex<()>>,
}

impl Handle {
    /// Builds `config` beside the running generation, reusing what did not change, checks its
    /// table routes as a start does, and swaps it in: requests from then on (on open
    /// connections too) use it; requests in flight finish on the stacks they started on.
    pub async fn reload(&self, config: Config) -> Result<(), ReloadError> {
        self.apply(move |_| Ok(config)).await.map(drop)
    }

    /// Reads the config file again and reloads it; returns the new config's hash.
    pub async fn reload_source(&self) -> Result<String, ReloadError> {
        self.apply(|this| match &this.source {
            None => Err(ReloadError::NoSource),
            Some(source) => source.load().map_err(ReloadError::from),
        })
        .await
    }

    /// The one reload path: loads, builds, checks and swaps on a blocking thread (reading,
    /// validating and building take milliseconds that no connection should wait for), one
    /// reload at a time, and counts the outcome (a panic counts as a failure); returns the
    /// running config's hash.
    async fn apply(
        &self,
        load: impl FnOnce(&Self) -> Result<Config, ReloadError> + Send + 'static,
    ) -> Result<String, ReloadError> {
        let this = self.clone();
        let outcome = blocking(move || {
            let _one = this.reloading.lock().unwrap_or_else(|e| e.into_inner());
            this.swap(load(&this)?)?;
            Ok(this.generation().config().hash())
        })
        .await;
        self.metrics.lifecycle.reloaded(outcome.is_ok());
        outcome
    }

    /// Builds `config` and swaps it in; on a blocking thread in the runtime, which waits for
    /// the table checks.
    fn swap(&self, config: Config) -> Result<(), ReloadError> {
        let previous = self.current.load_full();
        let running = previous.config();
        // What the listener fixed at start; a reload that changes it is refused, by name.
        let fixed = running.server.differences(&config.server);
        if !fixed.is_empty() {
            return Err(ReloadError::Fixed(fixed));
        }
        refuse_invalid_certificates(running, &config)?;
        let next = Generation::build(config, Some(&previous), &self.metrics)?;
        // A table route that no longer fits its table is refused here, as at start, rather
        // than swapped in to answer 503.
        tokio::runtime::Handle::current()
            .block_on(next.check_tables(Some(&previous)))
            .map_err(|(route, reason)| ReloadError::Table { route, reason })?;
        for warning in &next.config().warnings {
            tracing::warn!("{warning}");
        }
        self.metrics.lifecycle.running(&next.config().hash());
        next.show_certificates(&self.metrics);
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// Starts a drain: `/ready` answers 503 at once, the listener closes after `drain_delay`.
    pub fn drain(&self) {
        self.drain.start("asked to");
    }

    /// Whether the server drains.
    pub fn draining(&self) -> bool {
        self.drain.is_draining()
    }

    /// The generation requests are routed in now.
    pub fn generation(&self) -> Arc<Generation> {
        self.current.load_full()
    }
}

/// A certificate renewed into one that is expired or not yet valid (a Secret rolled back, an
/// old pair written) would fail every handshake from now on: refused while the running one
/// is valid. One already invalid may be replaced by another, so a fix is never refused.
fn refuse_invalid_certificates(running: &Config, next: &Config) -> Result<(), ReloadError> {
    let now_valid: Vec<String> = crate::proxy::generation::certificates(running)
        .into_iter()
        .filter(|(_, identity)| identity.invalid_now().is_none())
        .map(|(name, _)| name)
        .collect();
    for (name, identity) in crate::proxy::generation::certificates(next) {
        if let Some(why) = identity.invalid_now()
            && now_valid.contains(&name)
        {
            return Err(ReloadError::Certificate {
                name,
                file: identity.cert_file.display().to_string(),
                why,
            });
        }
    }
    Ok(())
}

/// Runs a reload on a blocking thread (reading, validating, building and checking take
/// milliseconds that no connection should wait for).
async fn blocking<T: Send + 'static>(
    reload: impl FnOnce() -> Result<T, ReloadError> + Send + 'static,
) -> Result<T, ReloadError> {
    match tokio::task::spawn_blocking(reload).await {
        Ok(outcome) => outcome,
        // A panic while building is a bug, but not a reason to stop serving: whoever
        // asked (SIGHUP, the watcher, `POST /reload`) is told, and the process goes on.
        Err(error) => {
            let why = match error.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned()),
                Err(error) => error.to_string(),
            };
            tracing::error!(%why, "reload panicked");
            Err(ReloadError::Failed(why))
        }
    }
}
