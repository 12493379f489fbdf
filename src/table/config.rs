//! The typed PostgreSQL settings: named databases (`postgres`) and table resources
//! (`routes[].table`), routes whose terminal is a table or view instead of an HTTP upstream.

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use crate::cursor::CursorCodec;

/// One database pagegate reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/db?…`, `${NAME}` standing for environment variables
    /// (resolved when `run` builds the pool, so secrets stay out of the file).
    pub url: String,
    /// Connections kept at most.
    pub pool_size: NonZeroUsize,
    /// Time to open a connection, and to wait for a free one.
    pub connect_timeout: Duration,
    /// Longest a statement may run (per page, per export chunk).
    pub statement_timeout: Duration,
    /// `application_name` of pagegate's sessions (seen in `pg_stat_activity`).
    pub application_name: String,
    /// Sessions are read-only (`default_transaction_read_only`).
    pub read_only: bool,
    /// A read replica's URL (same form as `url`): exports read from it, pages and checks from
    /// `url`.
    pub replica_url: Option<String>,
    /// TLS to the database (`sslmode=require`, `verify-ca` or `verify-full` in the URL): the
    /// server's certificate is always verified, against these roots.
    pub tls: Option<TlsRoots>,
    /// How statements are sent.
    pub statements: Statements,
}

/// The certificates a database's TLS certificate is verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsRoots {
    /// The system's trust store.
    System,
    /// The certificates of a PEM file (DER, read when the config loads).
    File {
        /// The file, for messages.
        path: std::path::PathBuf,
        /// Its certificates.
        certificates: Vec<Vec<u8>>,
        /// A hash of the bytes read, to tell a changed file.
        fingerprint: [u8; 32],
    },
}

/// How statements are sent to a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statements {
    /// Prepared once per query shape and connection, kept in a bounded cache.
    Cached,
    /// Unnamed, parsed with every request: for PgBouncer in transaction mode, where a
    /// connection's prepared statements may belong to another client's server session.
    Unnamed,
}

/// `url` with each `${NAME}` replaced by `value(NAME)`, and whether every one was: filling
/// stops at a `${` without its `}` or at a name `value` has nothing for (`None`), giving what
/// was filled until then. The one reader of placeholders: the config's shape check, the
/// variables `check` lists and the URL `run` connects to.
pub(crate) fn fill_placeholders(
    url: &str,
    mut value: impl FnMut(&str) -> Option<String>,
) -> (String, bool) {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(filled) = after
            .find('}')
            .and_then(|end| Some((value(&after[..end])?, end)))
        else {
            return (out, false);
        };
        out.push_str(&filled.0);
        rest = &after[filled.1 + 1..];
    }
    out.push_str(rest);
    (out, true)
}

/// `url` as tokio-postgres reads it: `sslmode=verify-ca` and `verify-full` (libpq's names for
/// verified TLS, which pagegate always does) become `require`.
pub(crate) fn tokio_postgres_url(url: &str) -> String {
    url.replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require")
}

impl PostgresConfig {
    /// The environment variables the URLs name (`${NAME}`).
    pub fn env_vars(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for url in std::iter::once(&self.url).chain(&self.replica_url) {
            fill_placeholders(url, |name| {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
                Some(String::new())
            });
        }
        names
    }
}

/// A table (or view) served as keyset-paged JSON and streamed exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// The database's name under `postgres`.
    pub database: String,
    /// That database's settings.
    pub postgres: Arc<PostgresConfig>,
    /// Signs and verifies its pages' cursors.
    pub codec: Arc<CursorCodec>,
    /// `table` or `schema.table`.
    pub name: String,
    /// Columns clients may ask for and filter on, in this order.
    pub columns: Vec<String>,
    /// Columns a page has when the request names no `fields`.
    pub default_fields: Vec<String>,
    /// The key: columns, unique together and NOT NULL, each ascending or descending.
    pub key: Vec<KeyColumn>,
    /// Filters allowed, by column.
    pub filters: BTreeMap<String, Vec<FilterOp>>,
    /// Rows a page has when the request names no `limit`.
    pub default_limit: u32,
    /// Most rows a page may have.
    pub max_limit: u32,
    /// Most bytes of a page's rows: it ends after the row that reaches them, its next cursor
    /// from there (a page holds its rows whole, as one body).
    pub page_bytes: u64,
    /// Export formats allowed (none: no export).
    pub formats: Vec<ExportFormat>,
    /// Rows per export chunk (one short keyset query each).
    pub chunk_rows: NonZeroU32,
    /// Most bytes of an export chunk: it ends after the row that reaches them, the next
    /// starting after that row.
    pub chunk_bytes: u64,
    /// Export chunks fetched at once (consecutive key ranges), at most the route's share of
    /// the pool.
    pub parallel: NonZeroUsize,
    /// Row scoping: a filter every request gets from a header a trusted auth layer sets.
    pub scope: Option<Scope>,
    /// What a key no index walks in order does: refuse the resource or serve it with a warning.
    pub on_missing_index: MissingIndex,
    /// How exports are read from the database.
    pub via: ExportVia,
    /// Most connections of its database's pool its statements hold at once; `None`: the whole
    /// pool when it is the database's only table route, else half of it, rounded up.
    pub max_connections: Option<NonZeroUsize>,
    /// Where its settings stand in the file.
    pub places: TablePlaces,
}

/// Where a table's settings stand in the config file: the database check (`pagegate check`,
/// the start, a reload) finds problems the file alone cannot show, such as a filter operator
/// the column's type has no meaning for, and names the line to change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TablePlaces {
    /// The file, as given (`FILE` of `FILE:LINE:COLUMN`).
    pub file: String,
    /// `name`.
    pub name: Option<crate::config::problems::Position>,
    /// Each `key` entry, in order.
    pub key: Vec<crate::config::problems::Position>,
    /// Each operator of `filters`, by column and operator.
    pub filters: BTreeMap<(String, FilterOp), crate::config::problems::Position>,
    /// `scope.column`.
    pub scope: Option<crate::config::problems::Position>,
}

impl TablePlaces {
    /// `FILE:LINE:COLUMN: ` of `at` (`FILE: ` when not known).
    pub fn at(&self, at: Option<crate::config::problems::Position>) -> String {
        match at {
            Some(p) => format!("{}:{}:{}: ", self.file, p.line, p.column),
            None => format!("{}: ", self.file),
        }
    }
}

/// What the start-up check does when no index walks a table's key in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingIndex {
    /// The resource is out of service (and `pagegate check` fails).
    Refuse,
    /// The resource is served; the missing index is logged with its `CREATE INDEX`.
    Warn,
}

/// How exports are read from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportVia {
    /// `COPY (…) TO STDOUT (FORMAT csv)` per chunk: PostgreSQL writes bare columns as CSV,
    /// pagegate passes them on (CSV) or turns each record into JSON (NDJSON).
    Copy,
    /// Keyset queries per chunk: PostgreSQL builds each value's text or JSON, pagegate writes
    /// the rows out.
    Queries,
}

/// Row scoping: `column = <value>` on every request, the value from a header or a verified
/// claim; a request without it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The column.
    pub column: String,
    /// Where the value comes from.
    pub from: ScopeSource,
}

/// Where a scope's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeSource {
    /// A header, set by an auth layer in front.
    Header(http::HeaderName),
    /// A claim of a token the identity verifies.
    Claim {
        /// The identity.
        identity: std::sync::Arc<crate::identity::config::IdentityConfig>,
        /// The claim.
        claim: String,
    },
}

/// One key column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    /// The column.
    pub column: String,
    /// Sorted descending (`-column` in the config).
    pub descending: bool,
}

/// A filter operator: `column=op.value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FilterOp {
    /// `=`
    Eq,
    /// `<>`
    Neq,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `= ANY(…)`, values comma-separated
    In,
    /// `IS NULL` / `IS NOT NULL` (`is.null`, `is.not_null`)
    Is,
}

impl FilterOp {
    /// Every operator, as written in requests and the config.
    pub const ALL: [(&'static str, Self); 8] = [
        ("eq", Self::Eq),
        ("neq", Self::Neq),
        ("lt", Self::Lt),
        ("lte", Self::Lte),
        ("gt", Self::Gt),
        ("gte", Self::Gte),
        ("in", Self::In),
        ("is", Self::Is),
    ];

    /// The operator written `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, op)| *op)
    }

    /// As written.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("?", |(n, _)| n)
    }
}

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON object per line.
    Ndjson,
}
