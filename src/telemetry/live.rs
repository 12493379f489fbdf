//! What is open right now: connections, requests in flight, tunnels, held-page bytes and each
//! database pool's connections. Nothing here runs per request: connections, streams, held bytes
//! and pools are read when `/metrics` is scraped, by the samplers the server registers
//! ([`Live::sample_with`]); tunnels, rare and long, count themselves as they open and close.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::sync::lock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    database: String,
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    database: String,
    pool: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

/// One pool's counts, as deadpool reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolSample {
    /// Connections the pool may open.
    pub(crate) max: usize,
    /// Connections open.
    pub(crate) open: usize,
    /// Open connections no statement holds.
    pub(crate) idle: usize,
    /// Requests waiting for a connection.
    pub(crate) waiting: usize,
}

/// What a sampler reads at scrape time.
type Sampler = Box<dyn Fn(&Live) + Send + Sync>;

/// The gauges; see the module docs.
pub(crate) struct Live {
    connections: Gauge,
    streams: Gauge,
    held: Gauge,
    tunnels: Family<UpstreamLabels, Gauge>,
    pool_max: Family<PoolLabels, Gauge>,
    pool_connections: Family<PoolStateLabels, Gauge>,
    pool_waiting: Family<PoolLabels, Gauge>,
    samplers: std::sync::Mutex<Vec<Sampler>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Live {
    /// The gauges, registered in `registry`.
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let this = Self {
            connections: Gauge::default(),
            streams: Gauge::default(),
            held: Gauge::default(),
            tunnels: Family::default(),
            pool_max: Family::default(),
            pool_connections: Family::default(),
            pool_waiting: Family::default(),
            samplers: std::sync::Mutex::new(Vec::new()),
        };
        registry.register(
            "open_connections",
            "Client connections open (HTTP/1 and HTTP/2)",
            this.connections.clone(),
        );
        registry.register(
            "open_streams",
            "Requests in flight: HTTP/1 requests and HTTP/2 streams, until their answer's body ends",
            this.streams.clone(),
        );
        registry.register(
            "open_tunnels",
            "Upgraded connections (WebSocket) relayed, by upstream",
            this.tunnels.clone(),
        );
        registry.register_with_unit(
            "held_page",
            "Bytes the running config's held list pages reserve (max_held_bytes bounds them)",
            Unit::Bytes,
            this.held.clone(),
        );
        registry.register(
            "database_pool_max_connections",
            "Connections a database pool may open, by database and pool (primary, replica)",
            this.pool_max.clone(),
        );
        registry.register(
            "database_pool_connections",
            "Connections a database pool holds open, by database, pool and state (idle, busy)",
            this.pool_connections.clone(),
        );
        registry.register(
            "database_pool_waiting",
            "Statements waiting for a connection of a database pool, by database and pool",
            this.pool_waiting.clone(),
        );
        this
    }

    /// Runs `sampler` before every scrape, to set the gauges from what it reads.
    pub(crate) fn sample_with(&self, sampler: impl Fn(&Self) + Send + Sync + 'static) {
        lock(&self.samplers).push(Box::new(sampler));
    }

    /// Runs every sampler (before a scrape).
    pub(super) fn sample(&self) {
        for sampler in lock(&self.samplers).iter() {
            sampler(self);
        }
    }

    /// Records the open connections and the requests in flight on them.
    pub(crate) fn connections(&self, connections: usize, streams: u64) {
        self.connections
            .set(i64::try_from(connections).unwrap_or(i64::MAX));
        self.streams.set(i64::try_from(streams).unwrap_or(i64::MAX));
    }

    /// Records the bytes held pages reserve.
    pub(crate) fn held_bytes(&self, bytes: u64) {
        self.held.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Forgets every pool's series (before the running config's pools are recorded, so a
    /// database a reload removed leaves no stale series).
    pub(crate) fn clear_pools(&self) {
        self.pool_max.clear();
        self.pool_connections.clear();
        self.pool_waiting.clear();
    }

    /// Records one pool's counts.
    pub(crate) fn pool(&self, database: &str, pool: &'static str, sample: PoolSample) {
        let labels = PoolLabels {
            database: database.to_owned(),
            pool,
        };
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.pool_max.get_or_create(&labels).set(count(sample.max));
        self.pool_waiting
            .get_or_create(&labels)
            .set(count(sample.waiting));
        for (state, n) in [
            ("idle", sample.idle),
            ("busy", sample.open.saturating_sub(sample.idle)),
        ] {
            let labels = PoolStateLabels {
                database: database.to_owned(),
                pool,
                state,
            };
            self.pool_connections.get_or_create(&labels).set(count(n));
        }
    }

    /// The tunnel gauge of one upstream.
    pub(crate) fn tunnels(&self, upstream: &str) -> Gauge {
        let labels = UpstreamLabels {
            upstream: upstream.to_owned(),
        };
        self.tunnels.get_or_create(&labels).clone()
    }
}
