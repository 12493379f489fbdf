//! `postgres` and `routes[].table` → [`PostgresConfig`] and [`TableConfig`], every problem
//! located. Identifiers are restricted to plain SQL names (letters, digits, `_`; a table may
//! have a schema): they are quoted in every statement anyway, but a name that needs quoting is
//! almost always a typo.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::Problems;
use super::identities::Identities;
use crate::config::defaults::{
    DEFAULT_PAGE_BYTES, DEFAULT_PG_POOL_SIZE, DEFAULT_TABLE_DEFAULT_LIMIT, DEFAULT_TABLE_MAX_LIMIT,
};
use crate::config::file::{FileScope, FileTable, Whole};
use crate::config::{FilterOp, KeyColumn, PostgresConfig, TableConfig};
use crate::cursor::CursorCodec;
use crate::table::config::{MissingIndex, ScopeSource, TablePlaces};
use export::export;

/// Most columns a table resource may list (each page row is built by one `json_build_object`,
/// which takes at most 100 arguments).
pub(crate) const MAX_COLUMNS: usize = 50;

/// A plain SQL name: a letter or `_`, then letters, digits or `_`, at most 63 bytes.
pub(crate) fn plain_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 63
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A column of the table's `columns`, or a located problem.
fn column(
    p: &mut Problems,
    columns: &BTreeSet<&str>,
    at: &Spanned<String>,
    key: &'static str,
) -> Option<String> {
    if columns.contains(at.value.as_str()) {
        Some(at.value.clone())
    } else {
        let known = columns.iter().copied().collect::<Vec<_>>().join(", ");
        p.invalid(
            at,
            key,
            format!("names `{}`, which is not in `columns` ({known})", at.value),
        );
        None
    }
}

/// A route's `table`: the resource's typed settings, every problem reported where it is
/// written.
pub(super) fn table(
    p: &mut Problems,
    at: &Spanned<FileTable>,
    databases: &BTreeMap<String, Arc<PostgresConfig>>,
    (cursors, identities): (Option<&Arc<CursorCodec>>, &Identities),
) -> Option<TableConfig> {
    let t = &at.value;
    if cursors.is_none() {
        p.invalid(
            at,
            "table",
            "needs `cursors` keys: a table route's pages carry signed cursors".to_owned(),
        );
    }
    let postgres = database(p, t, databases);
    check_name(p, t);
    let seen = columns(p, t);
    let columns: Vec<String> = t.columns.value.iter().map(|c| c.value.clone()).collect();
    let default_fields = match &t.default_fields {
        None => columns.clone(),
        Some(fields) => fields
            .value
            .iter()
            .filter_map(|f| column(p, &seen, f, "default_fields"))
            .collect(),
    };
    let mut places = TablePlaces {
        name: Some(t.name.referenced.into()),
        ..TablePlaces::default()
    };
    let key = key(p, t, &seen, &mut places);
    let filters = filters(p, t, &seen, &mut places);
    let (default_limit, max_limit) = limits(p, t);
    let page_bytes = p.size(
        t.page_bytes.as_ref(),
        "page_bytes",
        DEFAULT_PAGE_BYTES,
        (64 * 1024, 1 << 30),
        "a page is held whole while it is written: ",
    );
    let export = export(p, t);
    let on_missing_index = p.choice(
        t.on_missing_index.as_ref(),
        "on_missing_index",
        [
            ("refuse", MissingIndex::Refuse),
            ("warn", MissingIndex::Warn),
        ],
        "",
    );
    let scope = t
        .scope
        .as_ref()
        .and_then(|s| scope(p, s, identities, &mut places));
    let max_connections = max_connections(p, t, postgres.as_deref());
    Some(TableConfig {
        max_connections,
        scope,
        database: t.database.value.clone(),
        postgres: postgres?,
        codec: Arc::clone(cursors?),
        name: t.name.value.clone(),
        columns,
        default_fields,
        key,
        filters,
        default_limit,
        max_limit,
        page_bytes,
        formats: export.formats,
        chunk_rows: export.chunk_rows,
        chunk_bytes: export.chunk_bytes,
        parallel: export.parallel,
        on_missing_index,
        via: export.via,
        places,
    })
}

/// The database `database` names, declared under `postgres`.
fn database(
    p: &mut Problems,
    t: &FileTable,
    databases: &BTreeMap<String, Arc<PostgresConfig>>,
) -> Option<Arc<PostgresConfig>> {
    let found = databases.get(&t.database.value).cloned();
    if found.is_none() {
        let known = databases.keys().cloned().collect::<Vec<_>>().join(", ");
        p.invalid(
            &t.database,
            "database",
            format!(
                "is `{}`, which is not declared under `postgres`; declared: {known}",
                t.database.value
            ),
        );
    }
    found
}

/// `name`: a table or view, or `schema.name`.
fn check_name(p: &mut Problems, t: &FileTable) {
    let name_ok = match t.name.value.split_once('.') {
        Some((schema, table)) => plain_name(schema) && plain_name(table),
        None => plain_name(&t.name.value),
    };
    if !name_ok {
        p.invalid(
            &t.name,
            "name",
            format!(
                "is {:?}: write a table or view name, or schema.name (letters, digits, _)",
                t.name.value
            ),
        );
    }
}

/// `columns`: plain names, each once, 1 to [`MAX_COLUMNS`]; returns those well written.
fn columns<'t>(p: &mut Problems, t: &'t FileTable) -> BTreeSet<&'t str> {
    let mut seen = BTreeSet::new();
    for c in &t.columns.value {
        if !plain_name(&c.value) {
            p.invalid(
                c,
                "columns",
                format!(
                    "contains {:?}: write column names (letters, digits, _)",
                    c.value
                ),
            );
        } else if !seen.insert(c.value.as_str()) {
            p.invalid(c, "columns", format!("lists `{}` twice", c.value));
        }
    }
    if t.columns.value.is_empty() || t.columns.value.len() > MAX_COLUMNS {
        p.invalid(
            &t.columns,
            "columns",
            format!(
                "lists {} columns: list 1 to {MAX_COLUMNS}",
                t.columns.value.len()
            ),
        );
    }
    seen
}

/// `key`: 1 to 4 served columns, each once, `-` before a descending one.
fn key(
    p: &mut Problems,
    t: &FileTable,
    seen: &BTreeSet<&str>,
    places: &mut TablePlaces,
) -> Vec<KeyColumn> {
    let mut key = Vec::new();
    for k in &t.key.value {
        let (name, descending) = match k.value.strip_prefix('-') {
            Some(name) => (name, true),
            None => (k.value.as_str(), false),
        };
        if !seen.contains(name) {
            p.invalid(
                k,
                "key",
                format!("names `{name}`, which is not in `columns`: key columns are always served"),
            );
        } else if key.iter().any(|c: &KeyColumn| c.column == name) {
            p.invalid(k, "key", format!("lists `{name}` twice"));
        } else {
            key.push(KeyColumn {
                column: name.to_owned(),
                descending,
            });
            places.key.push(k.referenced.into());
        }
    }
    if t.key.value.is_empty() || t.key.value.len() > 4 {
        p.invalid(&t.key, "key", "must list 1 to 4 columns, unique together and NOT NULL, such as [created_at, id] (-id for descending)".to_owned());
    }
    key
}

/// `filters`: operators allowed on served columns, by column.
fn filters(
    p: &mut Problems,
    t: &FileTable,
    seen: &BTreeSet<&str>,
    places: &mut TablePlaces,
) -> BTreeMap<String, Vec<FilterOp>> {
    let mut filters = BTreeMap::new();
    for (name, ops) in &t.filters {
        if !seen.contains(name.as_str()) {
            p.invalid(
                ops,
                "filters",
                format!("names `{name}`, which is not in `columns`"),
            );
            continue;
        }
        let mut allowed = Vec::new();
        for op in &ops.value {
            if let Some(parsed) = FilterOp::parse(&op.value) {
                allowed.push(parsed);
                let at = op.referenced.into();
                places.filters.insert((name.clone(), parsed), at);
            } else {
                let all = FilterOp::ALL.map(|(n, _)| n).join(", ");
                let reason = format!("has operator {:?}: write one of {all}", op.value);
                p.invalid(op, "filters", reason);
            }
        }
        allowed.sort();
        allowed.dedup();
        filters.insert(name.clone(), allowed);
    }
    filters
}

/// `default_limit` and `max_limit`, the first at most the second.
fn limits(p: &mut Problems, t: &FileTable) -> (u32, u32) {
    let limit = |p: &mut Problems, v: &Option<Spanned<Whole>>, key: &'static str, default: u32| {
        v.as_ref()
            .and_then(|n| p.whole(n, key, 1..=100_000, "keep it between 1 and 100000 rows"))
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(default)
    };
    let default_limit = limit(
        p,
        &t.default_limit,
        "default_limit",
        DEFAULT_TABLE_DEFAULT_LIMIT,
    );
    let max_limit = limit(
        p,
        &t.max_limit,
        "max_limit",
        DEFAULT_TABLE_MAX_LIMIT.max(default_limit),
    );
    if let Some(at) = &t.max_limit
        && max_limit < default_limit
    {
        p.invalid(at, "max_limit", format!("({max_limit}) is below `default_limit` ({default_limit}): raise max_limit or lower default_limit"));
    }
    (default_limit, max_limit)
}

/// `scope`: the column rows are filtered on and the header its value comes from.
fn scope(
    p: &mut Problems,
    s: &Spanned<FileScope>,
    identities: &Identities,
    places: &mut TablePlaces,
) -> Option<crate::config::Scope> {
    // The scope column need not be served: it only filters.
    if !plain_name(&s.value.column.value) {
        p.invalid(
            &s.value.column,
            "column",
            format!("is {:?}: write a column name", s.value.column.value),
        );
    }
    let from = match (&s.value.header, &s.value.jwt, &s.value.claim) {
        (Some(header), None, None) => scope_header(p, header).map(ScopeSource::Header),
        (None, Some(jwt), Some(claim)) => {
            let identity = identities.named(p, jwt);
            let claim = super::identities::claim(p, claim);
            Some(ScopeSource::Claim {
                identity: identity?,
                claim: claim?,
            })
        }
        _ => {
            p.invalid(s, "scope", "takes the value from `header` (one your auth layer sets) or from a verified token, `jwt` with `claim`: set one of the two".to_owned());
            None
        }
    };
    places.scope = Some(s.value.column.referenced.into());
    Some(crate::config::Scope {
        column: s.value.column.value.clone(),
        from: from?,
    })
}

fn scope_header(p: &mut Problems, h: &Spanned<String>) -> Option<http::HeaderName> {
    p.header_name(h, "header", "X-Tenant-Id")
}

/// `max_connections`: at most the database's pool.
fn max_connections(
    p: &mut Problems,
    t: &FileTable,
    database: Option<&PostgresConfig>,
) -> Option<NonZeroUsize> {
    let pool_size = database.map_or(DEFAULT_PG_POOL_SIZE.get(), |d| d.pool_size.get());
    let n = t.max_connections.as_ref()?;
    let fix = format!(
        "keep it between 1 and the database's pool_size ({pool_size}): a route holds at most that many of its connections"
    );
    let n = p.whole(n, "max_connections", 1..=pool_size as u64, &fix)?;
    usize::try_from(n).ok().and_then(NonZeroUsize::new)
}

mod export;
