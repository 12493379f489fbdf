//! The process's own metrics, beside the requests': its build, the config it runs and its
//! reloads, whether it is ready, whether each upstream and database answers, and when the
//! certificates it presents expire.

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
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
    certificates: Family<CertificateLabels, Gauge>,
    /// The certificates' names last set, so a reload drops the ones it removed.
    certificate_names: std::sync::Mutex<Vec<String>>,
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
            certificates: Family::default(),
            certificate_names: std::sync::Mutex::default(),
        };
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When a certificate pagegate presents expires, in seconds since the Unix epoch: the listener's (name=listener) and each upstream's client certificate (name=upstreams.NAME)",
            this.certificates.clone(),
        );
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

    /// Records the expiry of each certificate the running config presents, by name, and drops
    /// the names it no longer has.
    pub(crate) fn certificates(&self, expiries: Vec<(String, u64)>) {
        let mut names = self
            .certificate_names
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (name, not_after) in &expiries {
            let labels = CertificateLabels { name: name.clone() };
            self.certificates
                .get_or_create(&labels)
                .set(i64::try_from(*not_after).unwrap_or(i64::MAX));
        }
        for old in names.iter() {
            if !expiries.iter().any(|(name, _)| name == old) {
                self.certificates
                    .remove(&CertificateLabels { name: old.clone() });
            }
        }
        *names = expiries.into_iter().map(|(name, _)| name).collect();
    }
}
