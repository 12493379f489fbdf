//! The configuration file as written: raw serde structs that reject unknown keys.
//!
//! Every value whose meaning is checked after parsing (addresses, durations, sizes, names that
//! refer to other entries) is wrapped in [`Spanned`] so the error can point at its line and
//! column. [`super::Config`] is built from these with `TryFrom`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

mod identity;
mod limits;
mod tenants;
mod whole;

pub(crate) use identity::{FileClaimKey, FileIdentity, FileKeySpec, OneOrMany};
pub(crate) use limits::{
    FileConcurrency, FileCostUnit, FileDescriptorEntry, FileLimitKey, FileLimitStore, FileLimits,
    FileOnRedisError, FilePace, FilePaceScope, FileRate, FileRateLimitService, FileRedis,
    FileRedisTls,
};
pub(crate) use tenants::{FileMatch, FileOnExceed, FileOverride, FileQuota};
pub(crate) use whole::Whole;

/// Top level of a pagegate YAML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) listen: Option<Spanned<String>>,
    /// Read as `admin.listen`, with a warning.
    pub(crate) metrics_listen: Option<Spanned<String>>,
    pub(crate) admin: Option<Spanned<FileAdmin>>,
    pub(crate) drain_delay: Option<Spanned<String>>,
    pub(crate) shutdown_grace: Option<Spanned<String>>,
    pub(crate) max_connections: Option<Spanned<Whole>>,
    pub(crate) max_connections_per_client: Option<Spanned<Whole>>,
    pub(crate) header_read_timeout: Option<Spanned<String>>,
    pub(crate) max_head_bytes: Option<Spanned<String>>,
    pub(crate) send_timeout: Option<Spanned<String>>,
    pub(crate) send_buffer: Option<Spanned<String>>,
    pub(crate) http2_keepalive_interval: Option<Spanned<String>>,
    pub(crate) http2_keepalive_timeout: Option<Spanned<String>>,
    pub(crate) http2_idle_timeout: Option<Spanned<String>>,
    pub(crate) http2_max_resets: Option<Spanned<Whole>>,
    pub(crate) max_held_bytes: Option<Spanned<String>>,
    pub(crate) max_held_bytes_per_client: Option<Spanned<String>>,
    /// Replaced by `trusted_proxies`; read only to say so.
    pub(crate) trust_forwarded: Option<Spanned<bool>>,
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<Spanned<String>>,
    pub(crate) access_log: Option<bool>,
    pub(crate) trace_context: Option<Spanned<String>>,
    pub(crate) tls: Option<Spanned<FileTls>>,
    pub(crate) traces: Option<Spanned<FileTraces>>,
    pub(crate) redis: Option<Spanned<FileRedis>>,
    pub(crate) rate_limit_service: Option<Spanned<FileRateLimitService>>,
    pub(crate) default: Option<Spanned<FileDefault>>,
    pub(crate) cursors: Option<Spanned<FileCursors>>,
    #[serde(default)]
    pub(crate) identities: BTreeMap<String, Spanned<FileIdentity>>,
    pub(crate) upstreams: Option<Spanned<BTreeMap<String, Spanned<FileUpstream>>>>,
    #[serde(default)]
    pub(crate) postgres: BTreeMap<String, Spanned<FilePostgres>>,
    #[serde(default)]
    pub(crate) routes: Vec<Spanned<FileRoute>>,
}

/// The admin listener: probes, metrics, the active config and the operator's verbs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAdmin {
    pub(crate) listen: Option<Spanned<String>>,
    pub(crate) allow: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) ready_requires: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) max_connections: Option<Spanned<Whole>>,
}

/// Spans sent to an OpenTelemetry collector over OTLP/HTTP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTraces {
    pub(crate) endpoint: Spanned<String>,
    pub(crate) service_name: Option<Spanned<String>>,
    pub(crate) sample_ratio: Option<Spanned<f64>>,
}

/// What happens to a request that matches no route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDefault {
    pub(crate) action: Spanned<FileDefaultAction>,
    pub(crate) upstream: Option<Spanned<String>>,
    pub(crate) limits: Option<Spanned<FileLimits>>,
    pub(crate) allow_read_body: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileDefaultAction {
    Pass,
    Deny,
}

/// One backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileUpstream {
    pub(crate) url: Spanned<String>,
    pub(crate) host: Option<Spanned<String>>,
    pub(crate) http2: Option<bool>,
    pub(crate) rewrite_redirects: Option<bool>,
    pub(crate) format_suffixes: Option<bool>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) response_timeout: Option<Spanned<String>>,
    pub(crate) idle_timeout: Option<Spanned<String>>,
    pub(crate) pool_idle_timeout: Option<Spanned<String>>,
    pub(crate) pool_max_idle: Option<Spanned<Whole>>,
    pub(crate) tls: Option<Spanned<FileUpstreamTls>>,
}

/// The listener's TLS: its certificate, and the CA client certificates must chain to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTls {
    pub(crate) cert_file: Spanned<String>,
    pub(crate) key_file: Spanned<String>,
    pub(crate) client_ca_file: Option<Spanned<String>>,
}

/// An `https://` upstream's TLS: what its certificate is verified against, the name verified,
/// and a client certificate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileUpstreamTls {
    pub(crate) ca_file: Option<Spanned<String>>,
    pub(crate) cert_file: Option<Spanned<String>>,
    pub(crate) key_file: Option<Spanned<String>>,
    pub(crate) server_name: Option<Spanned<String>>,
}

/// One route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRoute {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) path: Spanned<String>,
    pub(crate) methods: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) upstream: Option<Spanned<String>>,
    pub(crate) table: Option<Spanned<FileTable>>,
    pub(crate) list: Option<Spanned<FileList>>,
    pub(crate) response_timeout: Option<Spanned<String>>,
    pub(crate) idle_timeout: Option<Spanned<String>>,
    pub(crate) limits: Option<Spanned<FileLimits>>,
    pub(crate) allow_read_body: Option<bool>,
}

/// One database.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePostgres {
    pub(crate) url: Spanned<String>,
    pub(crate) pool_size: Option<Spanned<Whole>>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) statement_timeout: Option<Spanned<String>>,
    pub(crate) application_name: Option<Spanned<String>>,
    pub(crate) read_only: Option<bool>,
    pub(crate) replica_url: Option<Spanned<String>>,
    pub(crate) tls_ca_file: Option<Spanned<String>>,
    pub(crate) prepared_statements: Option<Spanned<String>>,
}

/// A table resource.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTable {
    pub(crate) database: Spanned<String>,
    pub(crate) name: Spanned<String>,
    pub(crate) columns: Spanned<Vec<Spanned<String>>>,
    pub(crate) default_fields: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) key: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) filters: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    pub(crate) default_limit: Option<Spanned<Whole>>,
    pub(crate) max_limit: Option<Spanned<Whole>>,
    pub(crate) page_bytes: Option<Spanned<String>>,
    pub(crate) export: Option<Spanned<FileExport>>,
    pub(crate) scope: Option<Spanned<FileScope>>,
    pub(crate) on_missing_index: Option<Spanned<String>>,
    pub(crate) max_connections: Option<Spanned<Whole>>,
}

/// Row scoping of a table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileScope {
    pub(crate) column: Spanned<String>,
    pub(crate) header: Option<Spanned<String>>,
    pub(crate) jwt: Option<Spanned<String>>,
    pub(crate) claim: Option<Spanned<String>>,
}

/// A table's exports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileExport {
    pub(crate) formats: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) chunk_rows: Option<Spanned<Whole>>,
    pub(crate) chunk_bytes: Option<Spanned<String>>,
    pub(crate) via: Option<Spanned<String>>,
    pub(crate) parallel: Option<Spanned<Whole>>,
}

/// Pagination policy of a list route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileList {
    pub(crate) limit_param: Option<Spanned<String>>,
    pub(crate) offset_param: Option<Spanned<String>>,
    pub(crate) page_param: Option<Spanned<String>>,
    pub(crate) first_page: Option<Spanned<Whole>>,
    pub(crate) default_limit: Option<Spanned<Whole>>,
    pub(crate) max_limit: Option<Spanned<Whole>>,
    pub(crate) max_offset: Option<Spanned<Whole>>,
    pub(crate) on_violation: Option<FileViolation>,
    pub(crate) max_items: Option<Spanned<Whole>>,
    pub(crate) max_bytes: Option<Spanned<String>>,
    pub(crate) items: Option<Spanned<String>>,
    pub(crate) on_invalid: Option<FileInvalid>,
    pub(crate) report_only: Option<bool>,
    pub(crate) keyset: Option<Spanned<FileKeyset>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileViolation {
    Reject,
    Clamp,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileInvalid {
    Pass,
    Reject,
}

/// How a backend filters by key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileKeyset {
    pub(crate) keys: Spanned<Vec<Spanned<FileKey>>>,
    pub(crate) order: Option<FileOrder>,
    #[serde(default)]
    pub(crate) set_params: BTreeMap<String, String>,
    pub(crate) cursor_param: Option<Spanned<String>>,
    pub(crate) next_cursor_field: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileKey {
    pub(crate) field: Spanned<String>,
    pub(crate) param: Spanned<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileOrder {
    Asc,
    Desc,
}

/// Cursor signing keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileCursors {
    pub(crate) keys: Spanned<Vec<Spanned<FileCursorKey>>>,
    pub(crate) ttl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileCursorKey {
    pub(crate) id: Spanned<Whole>,
    pub(crate) secret: Option<Spanned<String>>,
    pub(crate) secret_env: Option<Spanned<String>>,
}
