//! The process's own metrics, beside the requests': its build, the config it runs and its
//! reloads, whether it is ready, and whether each upstream and database answers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConfigLabels {
    hash: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    kind: &'static str,
    name: String,
}

/// Metrics of the process's life: reloads, readiness, backends' reachability.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    reloads: Family<ResultLabels, Counter>,
    config: Family<ConfigLabels, Gauge>,
    ready: Gauge,
    backend_up: Family<BackendLabels, Gauge>,
    running_hash: std::sync::Mutex<Option<ConfigLabels>>,
}

impl Lifecycle {
    /// The metrics, registered in `registry`.
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "pagegate's version (always 1)", build);
        let this = Self {
            reloads: Family::default(),
            config: Family::default(),
            ready: Gauge::default(),
            backend_up: Family::default(),
            running_hash: std::sync::Mutex::default(),
        };
        registry.register(
            "reloads",
            "Config reloads, by result (ok, failed: the running config stayed)",
            this.reloads.clone(),
        );
        registry.register(
            "config_info",
            "The running config's SHA-256 (always 1)",
            this.config.clone(),
        );
        registry.register(
            "ready",
            "1 while /ready answers 200, 0 while it answers 503",
            this.ready.clone(),
        );
        registry.register(
            "backend_up",
            "Whether an upstream (kind=upstream) or database (kind=database) answered the last readiness probe",
            this.backend_up.clone(),
        );
        this
    }

    /// Counts a reload that applied (`ok`) or was refused.
    pub(crate) fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Records the running config's hash, replacing the previous one. The new series is set
    /// before the old goes, so a scrape in between sees one or both, never none.
    pub(crate) fn running(&self, hash: &str) {
        let new = ConfigLabels {
            hash: hash.to_owned(),
        };
        self.config.get_or_create(&new).set(1);
        let mut last = self.running_hash.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = last.replace(new.clone())
            && old != new
        {
            self.config.remove(&old);
        }
    }

    /// Records what `/ready` answers.
    pub(crate) fn ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Drops a backend the running config no longer has.
    pub(crate) fn forget_backend(&self, kind: &'static str, name: &str) {
        self.backend_up.remove(&BackendLabels {
            kind,
            name: name.to_owned(),
        });
    }

    /// Records whether a backend answered its probe.
    pub(crate) fn backend(&self, kind: &'static str, name: &str, up: bool) {
        let labels = BackendLabels {
            kind,
            name: name.to_owned(),
        };
        self.backend_up.get_or_create(&labels).set(i64::from(up));
    }
}
