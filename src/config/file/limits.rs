//! `limits` of a route, and the shared stores they may live in (`redis`,
//! `rate_limit_service`), as the file says them.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{FileKeySpec, FileMatch, FileOverride, FileQuota, Whole};

/// Rate and concurrency limits of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLimits {
    pub(crate) key: Option<Spanned<FileKeySpec>>,
    pub(crate) key_header: Option<Spanned<String>>,
    pub(crate) rate: Option<Spanned<FileRates>>,
    pub(crate) concurrency: Option<Spanned<FileConcurrency>>,
    pub(crate) report_only: Option<bool>,
    pub(crate) max_clients: Option<Spanned<Whole>>,
    pub(crate) store: Option<Spanned<FileLimitStore>>,
    pub(crate) on_redis_error: Option<Spanned<FileOnRedisError>>,
    pub(crate) on_store_error: Option<Spanned<FileOnRedisError>>,
    pub(crate) descriptors: Option<Spanned<Vec<Spanned<FileDescriptorEntry>>>>,
    pub(crate) cost: Option<Spanned<FileCost>>,
    pub(crate) batch: Option<Spanned<String>>,
    pub(crate) pace: Option<Spanned<FilePace>>,
    #[serde(default)]
    pub(crate) overrides: Vec<Spanned<FileOverride>>,
    #[serde(default)]
    pub(crate) exempt: Vec<Spanned<FileMatch>>,
    pub(crate) quota: Option<Spanned<FileQuota>>,
}

/// `limits.pace`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePace {
    pub(crate) bytes_per_second: Spanned<String>,
    pub(crate) per: Option<Spanned<FilePaceScope>>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FilePaceScope {
    Client,
    Key,
    Route,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileLimitStore {
    Local,
    Redis,
    EnvoyRls,
}

/// `rate_limit_service`: an Envoy rate-limit service (`store: envoy_rls`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRateLimitService {
    pub(crate) address: Spanned<String>,
    pub(crate) domain: Spanned<String>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) tls: Option<Spanned<super::FileUpstreamTls>>,
}

/// `limits.cost`: the `hits_addend` of a request, and what its answer adds when it ends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileCost {
    pub(crate) request: Option<Spanned<Whole>>,
    pub(crate) response: Option<Spanned<FileCostUnit>>,
    pub(crate) every: Option<Spanned<String>>,
}

/// What `limits.cost.response` counts.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileCostUnit {
    Rows,
    Bytes,
}

/// One entry of `limits.descriptors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDescriptorEntry {
    pub(crate) key: Spanned<String>,
    pub(crate) value: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileOnRedisError {
    Open,
    Closed,
}

/// The Redis server shared limits live in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRedis {
    pub(crate) url: Option<Spanned<String>>,
    pub(crate) cluster: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) sentinel: Option<Spanned<FileSentinel>>,
    pub(crate) tls: Option<Spanned<FileRedisTls>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) key_prefix: Option<Spanned<String>>,
    pub(crate) lease_ttl: Option<Spanned<String>>,
}

/// `redis.tls`: the files of TLS to Redis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRedisTls {
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) cert_file: Option<Spanned<String>>,
    pub(crate) key_file: Option<Spanned<String>>,
}

/// `redis.sentinel`: a master found through Sentinel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSentinel {
    pub(crate) master: Spanned<String>,
    pub(crate) urls: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileLimitKey {
    Client,
    Header,
    HeaderAndClient,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRates {
    pub(crate) per_client: Option<Spanned<FileRate>>,
    pub(crate) per_address: Option<Spanned<FileRate>>,
    pub(crate) total: Option<Spanned<FileRate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRate {
    pub(crate) requests: Spanned<Whole>,
    pub(crate) per: Spanned<String>,
    pub(crate) burst: Option<Spanned<Whole>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConcurrency {
    pub(crate) per_client: Option<Spanned<Whole>>,
    pub(crate) total: Option<Spanned<Whole>>,
    pub(crate) queue: Option<Spanned<Whole>>,
    pub(crate) queue_timeout: Option<Spanned<String>>,
}
