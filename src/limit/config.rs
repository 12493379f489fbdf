//! The typed limits of one route (`routes[].limits`, `default.limits`): who a client is for
//! them, request rates, requests in flight, and whether they are enforced or only reported.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use http::HeaderName;

/// A route's rate and concurrency limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// What tells clients apart.
    pub key: ClientKeySource,
    /// Requests one client may make.
    pub rate_per_client: Option<Rate>,
    /// With `key: header_and_client`, requests one address may make whatever header values it
    /// sends, so rotating the header gains at most this.
    pub rate_per_address: Option<Rate>,
    /// Requests all clients together may make.
    pub rate_total: Option<Rate>,
    /// Requests one client may have in flight.
    pub concurrency_per_client: Option<NonZeroU32>,
    /// Requests all clients together may have in flight.
    pub concurrency_total: Option<NonZeroU32>,
    /// Requests that may wait for a free slot instead of being refused at once.
    pub queue: Option<Queue>,
    /// Evaluate, count and report, but let every request through.
    pub report_only: bool,
    /// Most clients whose rate state is kept (memory bound of the per-client limiter).
    pub max_clients: NonZeroUsize,
    /// Where the limits are kept: this process, or Redis (shared by every replica).
    pub store: LimitStore,
    /// With `store: envoy_rls`, the descriptor entries sent to the service.
    pub descriptors: Vec<DescriptorEntry>,
    /// With `store: envoy_rls`, what a request and its answer cost (`hits_addend`).
    pub cost: Cost,
    /// With `store: redis`, rates counted here and sent to Redis every this long (`batch`)
    /// instead of one round trip a request; `None`: exact.
    pub batch: Option<Duration>,
    /// With `store: redis`, what happens while Redis cannot answer.
    pub on_redis_error: OnRedisError,
    /// Response bytes slowed instead of refused (in this process).
    pub pace: Option<Pace>,
    /// Named tenants with per-client limits of their own (`overrides`), first match wins.
    pub overrides: Vec<Override>,
    /// Requests no rate or concurrency limit applies to (`exempt`): named service identities.
    pub exempt: Vec<TenantMatch>,
    /// Rows or bytes one client may take per window, charged as the body streams.
    pub quota: Option<QuotaConfig>,
}

impl LimitsConfig {
    /// The request headers these limits read (the key's, a tenant's or an exemption's match,
    /// a descriptor's value): the hop keeps them as the limits read them.
    pub fn headers(&self) -> impl Iterator<Item = &HeaderName> {
        let key = match &self.key {
            ClientKeySource::Header(name) | ClientKeySource::HeaderAndClient(name) => Some(name),
            ClientKeySource::Client | ClientKeySource::Claim(_) => None,
        };
        let matched = self
            .overrides
            .iter()
            .map(|o| &o.matches)
            .chain(&self.exempt)
            .filter_map(|m| match m {
                TenantMatch::Header { header, .. } => Some(header),
                TenantMatch::Claim { .. } => None,
            });
        let described = self.descriptors.iter().filter_map(|d| match &d.value {
            DescriptorValue::Header(name) => Some(name),
            _ => None,
        });
        key.into_iter().chain(matched).chain(described)
    }
}

/// `limits.quota`: `amount` rows (table exports) or bytes (any answer) per key per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Rows or bytes a client may take per window (and at most at once).
    pub amount: u64,
    /// What is counted.
    pub unit: QuotaUnit,
    /// The window: the quota refills evenly over it.
    pub per: Duration,
    /// What an answer that crosses the quota does.
    pub on_exceed: OnExceed,
}

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaUnit {
    /// Rows of table exports.
    Rows,
    /// Bytes of answer bodies.
    Bytes,
}

/// What an answer that crosses its quota does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExceed {
    /// Goes on to its end; the client's next one waits for the quota to refill.
    Finish,
    /// Ends after its last record (chunk, frame) that fits, with an error, never a clean end.
    Cut,
}

/// `limits.overrides[]`: a named class of clients with per-client limits of their own; the
/// route's totals still apply to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Its name: the `tenant_class` label of its metrics.
    pub name: String,
    /// Which requests belong to it.
    pub matches: TenantMatch,
    /// Its clients' rate, instead of `rate.per_client` (none: that one).
    pub rate: Option<Rate>,
    /// Its clients' requests in flight, instead of `concurrency.per_client` (none: that one).
    pub concurrency: Option<NonZeroU32>,
}

/// What picks a request out: a verified claim's value, or a header's (one value, exactly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantMatch {
    /// `{claim: C, value: V}`, of the token the route's `key: {jwt}` verified.
    Claim {
        /// The claim.
        claim: String,
        /// Its value.
        value: String,
    },
    /// `{header: H, value: V}`, set by an auth layer in front.
    Header {
        /// The header.
        header: HeaderName,
        /// Its value.
        value: String,
    },
}

/// `limits.pace`: response bytes paced to `bytes_per_second`, from one bucket per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Bytes a second (and at most a second's worth at once).
    pub bytes_per_second: NonZeroU32,
    /// Whose bytes share a bucket.
    pub per: PaceScope,
}

/// Whose response bytes share a pace bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaceScope {
    /// Each client address (as `trusted_proxies` decides, IPv6 by /64).
    Client,
    /// Each limits key (`key`: the address, a header, or both).
    Key,
    /// The whole route.
    Route,
}

/// Where a route's limits are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitStore {
    /// In this process: each replica enforces the whole quota on its own.
    Local,
    /// In Redis: every replica sharing it enforces one quota together.
    Redis,
    /// Rates decided by an Envoy rate-limit service (`rate_limit_service`); concurrency stays
    /// in this process (the service has no leases).
    EnvoyRls,
}

/// The Envoy rate-limit service `store: envoy_rls` asks (`rate_limit_service`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsConfig {
    /// Its gRPC address, `http://HOST:PORT` (HTTP/2 without TLS) or `https://HOST:PORT`.
    pub address: String,
    /// With `https://`, how the service is verified (and the client certificate shown).
    pub(crate) tls: Option<crate::tls::UpstreamTls>,
    /// The domain every request names (the service's config is per domain).
    pub domain: String,
    /// Longest wait for one answer before the route's `on_store_error` applies.
    pub timeout: Duration,
}

/// `limits.cost`: what a request costs the rate-limit service's budgets (`store: envoy_rls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// The `hits_addend` of the call that decides the request.
    pub request: NonZeroU32,
    /// Rows or bytes of the answer, sent in more calls while it streams and when it ends
    /// (Envoy's `apply_on_stream_done`, Envoy Gateway's `cost.response`); `None`: nothing
    /// after.
    pub response: Option<QuotaUnit>,
    /// How often a streaming answer sends what it owes so far (`cost.every`).
    pub every: Duration,
}

impl Default for Cost {
    fn default() -> Self {
        Self {
            request: NonZeroU32::MIN,
            response: None,
            every: crate::config::defaults::DEFAULT_COST_EVERY,
        }
    }
}

/// One entry of the descriptor a route sends the rate-limit service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorEntry {
    /// The entry's key, as the service's config names it.
    pub key: String,
    /// Where its value comes from.
    pub value: DescriptorValue,
}

/// Where a descriptor entry's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescriptorValue {
    /// The route's name.
    Route,
    /// The request's limits key (its address, a header's value or a claim, hashed as in
    /// Redis keys).
    Key,
    /// A claim of the route's verified token (its `key: {jwt: …}` identity).
    Claim(String),
    /// A request header's value (an entry without one is left out, as Envoy does).
    Header(HeaderName),
    /// A fixed text.
    Literal(String),
}

/// What a Redis-backed limit does while Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Fall back to this process's own limiters (each replica then allows the whole quota).
    Open,
    /// Refuse with 503.
    Closed,
}

/// The Redis deployment shared limits live in (`redis`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// One server, a cluster, or a master found through Sentinel.
    pub topology: RedisTopology,
    /// TLS settings of `rediss://` URLs (`None` with `redis://`).
    pub tls: Option<RedisTls>,
    /// Longest wait for one Redis answer before the route's `on_redis_error` applies.
    pub timeout: Duration,
    /// Prefix of every key pagegate writes.
    pub key_prefix: String,
    /// How long a concurrency lease lives unless renewed (renewed while the body streams), so
    /// a replica that dies cannot hold slots for longer.
    pub lease_ttl: Duration,
}

/// TLS to Redis (`rediss://`): rustls with the binary's one crypto provider, the server's
/// certificate and name verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// CAs the server's certificate must chain to, instead of the system's trust store.
    pub(crate) ca: Option<crate::tls::Roots>,
    /// A certificate chain and its key, for a server that asks for one (mutual TLS).
    pub(crate) client: Option<crate::tls::Identity>,
}

/// How pagegate finds the Redis it writes to. Every URL is
/// `redis://[user:password@]host:port[/db]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// `redis.url`: one server.
    Single(String),
    /// `redis.cluster`: seed nodes of a Redis Cluster; the client learns the others and
    /// follows `MOVED`/`ASK`. Each route's keys share one hash tag, so they live on one shard.
    Cluster(Vec<String>),
    /// `redis.sentinel`: the master named `master`, as the Sentinels at `urls` report it; a
    /// failover is followed on the next call after the old master fails or turns replica.
    Sentinel {
        /// The name the Sentinels monitor the master by.
        master: String,
        /// The Sentinels. Their user and password, if any, are also the master's.
        urls: Vec<String>,
    },
}

/// What tells clients apart for a route's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeySource {
    /// The client address (`trusted_proxies` decides it; IPv6 by /64).
    Client,
    /// A request header (an API key, a tenant id set by a trusted auth layer), hashed; a
    /// request without it is keyed by its client address.
    Header(HeaderName),
    /// The header and the client address together.
    HeaderAndClient(HeaderName),
    /// A claim of a verified token (`key: {jwt, claim}`), hashed.
    Claim(ClaimKey),
}

/// `key: {jwt: NAME, claim: C}`: clients told apart by a verified claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimKey {
    /// The identity that verifies the token.
    pub identity: std::sync::Arc<crate::identity::config::IdentityConfig>,
    /// The claim.
    pub claim: String,
    /// `anonymous: client`: a request without a good token is keyed by its address instead
    /// of refused.
    pub anonymous: bool,
}

/// A request rate: `requests` per `per`, at most `burst` at once (GCRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per window.
    pub requests: NonZeroU32,
    /// The window (whole seconds).
    pub per: Duration,
    /// Requests allowed at once after a quiet spell.
    pub burst: NonZeroU32,
}

/// A bounded wait for a free concurrency slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    /// Requests that may wait at once.
    pub size: NonZeroU32,
    /// How long one may wait.
    pub timeout: Duration,
}
