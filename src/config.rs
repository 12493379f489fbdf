//! Configuration: `YAML file → FileConfig (raw, serde) → Config (typed, validated)`.
//!
//! Everything is checked at start-up, before any socket opens: addresses, durations, sizes,
//! upstream names, route overlaps, pagination bounds, cursor secrets. A value left out takes the
//! `DEFAULT_*` constant of [`defaults`]. `config/reference.yaml` shows every key.
//!
//! A [`Config`] is plain data (`PartialEq`, no runtime objects): [`crate::proxy::generation`] builds
//! the route stacks, clients and codecs from it, and compares two configs to reuse what did
//! not change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use crate::cursor::{CursorCodec, CursorKey};
pub(crate) use crate::limit::config::{
    ClientKeySource, DescriptorEntry, DescriptorValue, LimitStore, LimitsConfig, OnRedisError,
    Queue, Rate, RedisConfig, RedisTls, RedisTopology, RlsConfig,
};
pub(crate) use crate::list::config::{
    KeyField, KeysetPolicy, ListPolicy, OffsetParam, OnInvalid, OnViolation, Order, parse_pointer,
};
pub(crate) use crate::table::config::{
    ExportFormat, FilterOp, KeyColumn, PostgresConfig, Scope, TableConfig,
};
pub(crate) use crate::upstream::config::{HostMode, TimeoutOverrides, UpstreamConfig};

pub(crate) mod defaults;
pub(crate) mod file;
mod load;
pub(crate) mod problems;
pub(crate) mod redact;
mod server;
mod watched;

pub(crate) use crate::telemetry::TracesConfig;
pub(crate) use problems::{ConfigError, ConfigProblem, Located, Position};
pub(crate) use server::{AdminConfig, ServerConfig};

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// What the listener fixed at start: a reload that changes any of it is refused.
    pub server: ServerConfig,
    /// Most bytes all held list pages may reserve together.
    pub max_held_bytes: u64,
    /// Most bytes one client's held list pages may reserve together.
    pub max_held_bytes_per_client: u64,
    /// What happens to requests that match no route.
    pub default: DefaultPolicy,
    /// Rate and concurrency limits of the `default` route.
    pub default_limits: Option<LimitsConfig>,
    /// GET and HEAD requests the `default` route takes may carry a body.
    pub default_allow_read_body: bool,
    /// The Redis server shared limits live in.
    pub redis: Option<RedisConfig>,
    /// The Envoy rate-limit service `store: envoy_rls` routes ask.
    pub rate_limit_service: Option<RlsConfig>,
    /// Databases table routes read from, by name.
    pub postgres: BTreeMap<String, Arc<PostgresConfig>>,
    /// Backends by name.
    pub upstreams: BTreeMap<String, Arc<UpstreamConfig>>,
    /// Routes in file order.
    pub routes: Vec<Arc<RouteConfig>>,
    /// Cursor signing keys, when any route is a keyset route.
    pub cursors: Option<CursorSettings>,
    /// Verified identities (`identities`), by name.
    pub identities: BTreeMap<String, Arc<crate::identity::config::IdentityConfig>>,
    /// Who may use the admin verbs, and what readiness requires.
    pub admin: AdminConfig,
    /// What the file says that still works but should change, as `FILE:LINE:COLUMN: …` lines.
    pub warnings: Vec<String>,
    /// Variables the secrets name that were unset when the file was checked without the
    /// environment ([`Config::check`]); always empty for a config `run` can use.
    pub unset_env: Vec<String>,
    /// The file as read, for `GET /config` (secrets redacted there) and its hash.
    pub text: Arc<str>,
}

/// Where a route's answers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An HTTP upstream.
    Upstream(Arc<UpstreamConfig>),
    /// A PostgreSQL table or view.
    Table(std::sync::Arc<TableConfig>),
}

impl Target {
    /// Whether what serves the route reads `/events.json` as `/events`: its upstream's
    /// `format_suffixes`; a table route does (pagegate serves `/events.csv` as `/events`).
    pub(crate) fn format_suffixes(&self) -> bool {
        match self {
            Self::Upstream(upstream) => upstream.format_suffixes,
            Self::Table(_) => true,
        }
    }
}

/// Cursor signing keys and lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorSettings {
    /// Keys, oldest first; the last one signs.
    pub keys: Vec<CursorKey>,
    /// How long a cursor stays valid; `None`: forever.
    pub ttl: Option<Duration>,
    /// The codec made from them, shared by every route that mints or reads cursors.
    pub codec: Arc<CursorCodec>,
}

/// What happens to a request that matches no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Relay it to this upstream unchanged.
    Pass(Arc<UpstreamConfig>),
    /// Answer 404 problem+json.
    Deny,
}

/// One route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Name used in logs, metrics and cursors.
    pub name: String,
    /// `matchit` path pattern.
    pub path: String,
    /// Methods it matches; `None` for all.
    pub methods: Option<Vec<Method>>,
    /// Where answers come from: an HTTP upstream or a table.
    pub target: Target,
    /// Pagination policy for list routes.
    pub list: Option<ListPolicy>,
    /// Timeouts that replace the upstream's for this route.
    pub timeouts: TimeoutOverrides,
    /// Rate and concurrency limits.
    pub limits: Option<LimitsConfig>,
    /// GET and HEAD requests may carry a body (a search API's query DSL); otherwise one that
    /// does is refused, since some backends read parameters from it.
    pub allow_read_body: bool,
}

// === impl Config ===

/// The file's text, or why it cannot be read.
fn read(path: &std::path::Path, name: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: name.to_owned(),
        problems: vec![Located {
            at: None,
            problem: ConfigProblem::Syntax(format!("cannot read the file: {e}")),
        }],
    })
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = read(path, &name)?;
        Self::parse(&name, &text)
    }

    /// Parses and validates YAML text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        Self::parse_with(file, text, true)
    }

    /// Validates a file as `pagegate check` does: a secret whose variable is unset is listed
    /// in [`Config::unset_env`] rather than refused, so the file can be checked where the
    /// secrets are not (a CI job, a laptop). The result validates everything else, but must
    /// not serve: its cursor keys are stand-ins.
    pub fn check(path: &std::path::Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = read(path, &name)?;
        Self::parse_with(&name, &text, false)
    }

    fn parse_with(file: &str, text: &str, env: bool) -> Result<Self, ConfigError> {
        let (mut config, warnings) = load::parse(text, env).map_err(|problems| ConfigError {
            file: file.to_owned(),
            problems,
        })?;
        if !warnings.is_empty() {
            let warnings = ConfigError {
                file: file.to_owned(),
                problems: warnings,
            };
            config.warnings = warnings.to_string().lines().map(str::to_owned).collect();
        }
        config.text = Arc::from(text);
        // Problems the database check finds later are located in this file too.
        for route in &mut config.routes {
            if let Target::Table(table) = &mut Arc::make_mut(route).target {
                file.clone_into(&mut Arc::make_mut(table).places.file);
            }
        }
        Ok(config)
    }

    /// The SHA-256 of the file as read, in hex: what `GET /config` and `pagegate_config_info`
    /// name the running config by.
    pub fn hash(&self) -> String {
        text_hash(self.text.as_bytes())
    }

    /// The upstream a route or the default policy names. Validation guarantees it exists.
    pub fn upstream(&self, name: &str) -> Option<&Arc<UpstreamConfig>> {
        self.upstreams.get(name)
    }
}

/// The SHA-256 of a config file's bytes, in hex, as [`Config::hash`] gives it.
pub(crate) fn text_hash(text: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

// === impl RouteConfig ===

/// A route's entries in the route table: its path, and for a table route also `<path>/export`.
/// `(list, table)`: whether it is a list route, a table route; `suffixes`: whether what serves
/// it reads format suffixes.
pub(crate) fn route_specs<T: Clone>(
    path: &str,
    methods: Option<&Vec<Method>>,
    (list, table): (bool, bool),
    suffixes: bool,
    value: T,
) -> Vec<crate::route_table::RouteSpec<T>> {
    let spec = |path: String| crate::route_table::RouteSpec {
        path,
        methods: methods.cloned(),
        list: list || table,
        suffixes,
        value: value.clone(),
    };
    let mut specs = vec![spec(path.to_owned())];
    if table {
        specs.push(spec(format!("{}/export", path.trim_end_matches('/'))));
    }
    specs
}

/// A byte count as it would be written in the file: `256MiB`, `1KiB`, `1000`.
pub(crate) fn yaml_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => b.to_string(),
    }
}

impl RouteConfig {
    /// What the route table needs to know of this route, with `value` as its lookup result: its
    /// path, and for a table route also `<path>/export`. Table routes count as list paths (their
    /// method checks apply).
    pub fn specs<T: Clone>(&self, value: T) -> Vec<crate::route_table::RouteSpec<T>> {
        let table = matches!(self.target, Target::Table(_));
        let list = self.list.is_some();
        let suffixes = self.target.format_suffixes();
        route_specs(
            &self.path,
            self.methods.as_ref(),
            (list, table),
            suffixes,
            value,
        )
    }

    /// One line for `pagegate check`.
    pub fn summary(&self) -> String {
        let methods = self.methods.as_ref().map_or_else(
            || "ANY".to_owned(),
            |m| m.iter().map(Method::as_str).collect::<Vec<_>>().join(","),
        );
        let target = match &self.target {
            Target::Upstream(upstream) => upstream.name.clone(),
            Target::Table(table) => format!("table {} in {}", table.name, table.database),
        };
        let mut line = format!("route {}: {methods} {} -> {target}", self.name, self.path);
        if let Some(list) = &self.list {
            let position = match &list.offset {
                OffsetParam::Offset(name) => format!("{name} <= {}", list.max_offset),
                OffsetParam::Page { name, first } => {
                    format!("{name} from {first}, offset <= {}", list.max_offset)
                }
            };
            line.push_str(&format!(
                "; list: {} default {} max {} (on_violation: {}), {position}, cut at {} items / {}",
                list.limit_param,
                list.default_limit,
                list.max_limit,
                list.on_violation.as_yaml(),
                list.max_items,
                yaml_bytes(list.max_bytes),
            ));
            if let Some(keyset) = &list.keyset {
                let keys: Vec<_> = keyset
                    .keys
                    .iter()
                    .map(|k| format!("{}->{}", k.field, k.param))
                    .collect();
                line.push_str(&format!(
                    "; keyset order: {} on {} via ?{}=",
                    keyset.order.as_yaml(),
                    keys.join(","),
                    keyset.cursor_param
                ));
            }
        }
        line
    }
}

#[cfg(test)]
mod tests;
