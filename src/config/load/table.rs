//! `postgres` and `routes[].table` → [`PostgresConfig`] and [`TableConfig`], every problem
//! located. Identifiers are restricted to plain SQL names (letters, digits, `_`; a table may
//! have a schema): they are quoted in every statement anyway, but a name that needs quoting is
//! almost always a typo.

use std::collections::{BTreeMap, BTreeSet};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::Problems;
use crate::config::defaults::{
    DEFAULT_CHUNK_ROWS, DEFAULT_PG_POOL_SIZE, DEFAULT_TABLE_DEFAULT_LIMIT, DEFAULT_TABLE_MAX_LIMIT,
};
use crate::config::file::FileTable;
use crate::config::{ExportFormat, FilterOp, KeyColumn, PostgresConfig, TableConfig};
use crate::cursor::CursorCodec;
use crate::table::config::{ExportVia, MissingIndex, TablePlaces};

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

pub(super) fn table(
    p: &mut Problems,
    at: &Spanned<FileTable>,
    databases: &BTreeMap<String, Arc<PostgresConfig>>,
    cursors: Option<&Arc<CursorCodec>>,
) -> Option<TableConfig> {
    let t = &at.value;
    if cursors.is_none() {
        p.invalid(
            at,
            "table",
            "needs `cursors` keys: a table route's pages carry signed cursors".to_owned(),
        );
    }
    if !databases.contains_key(&t.database.value) {
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
            match FilterOp::parse(&op.value) {
                Some(parsed) => {
                    allowed.push(parsed);
                    places
                        .filters
                        .insert((name.clone(), parsed), op.referenced.into());
                }
                None => {
                    let all = FilterOp::ALL
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ");
                    p.invalid(
                        op,
                        "filters",
                        format!("has operator {:?}: write one of {all}", op.value),
                    );
                }
            }
        }
        allowed.sort();
        allowed.dedup();
        filters.insert(name.clone(), allowed);
    }
    let limit = |p: &mut Problems, v: &Option<Spanned<u64>>, key: &'static str, default: u32| {
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
    let (formats, chunk_rows, via) = match &t.export {
        None => (
            vec![ExportFormat::Csv, ExportFormat::Ndjson],
            DEFAULT_CHUNK_ROWS,
            ExportVia::Copy,
        ),
        Some(e) => {
            let formats = match &e.value.formats {
                None => vec![ExportFormat::Csv, ExportFormat::Ndjson],
                Some(list) => list.value.iter().filter_map(|f| match f.value.as_str() {
                    "csv" => Some(ExportFormat::Csv),
                    "ndjson" => Some(ExportFormat::Ndjson),
                    other => {
                        p.invalid(f, "formats", format!("has {other:?}: write csv or ndjson (an empty list turns exports off)"));
                        None
                    }
                }).collect(),
            };
            let fix = "keep it between 100 and 1000000 rows";
            let chunk_rows = e
                .value
                .chunk_rows
                .as_ref()
                .and_then(|n| p.whole(n, "chunk_rows", 100..=1_000_000, fix))
                .and_then(|n| u32::try_from(n).ok())
                .and_then(NonZeroU32::new)
                .unwrap_or(DEFAULT_CHUNK_ROWS);
            let via = p.choice(
                e.value.via.as_ref(),
                "via",
                [("copy", ExportVia::Copy), ("queries", ExportVia::Queries)],
                "",
            );
            (formats, chunk_rows, via)
        }
    };
    let on_missing_index = p.choice(
        t.on_missing_index.as_ref(),
        "on_missing_index",
        [
            ("refuse", MissingIndex::Refuse),
            ("warn", MissingIndex::Warn),
        ],
        "",
    );
    let scope = t.scope.as_ref().and_then(|s| {
        // The scope column need not be served: it only filters.
        if !plain_name(&s.value.column.value) {
            p.invalid(
                &s.value.column,
                "column",
                format!("is {:?}: write a column name", s.value.column.value),
            );
        }
        let header = http::HeaderName::from_bytes(s.value.header.value.trim().as_bytes()).ok();
        if header.is_none() {
            p.invalid(
                &s.value.header,
                "header",
                format!(
                    "is {:?}: write a header name, such as X-Tenant-Id",
                    s.value.header.value
                ),
            );
        }
        places.scope = Some(s.value.column.referenced.into());
        Some(crate::config::Scope {
            column: s.value.column.value.clone(),
            header: header?,
        })
    });
    let pool_size = databases
        .get(&t.database.value)
        .map_or(DEFAULT_PG_POOL_SIZE.get(), |d| d.pool_size.get());
    let max_connections = t
        .max_connections
        .as_ref()
        .and_then(|n| {
            p.whole(
                n,
                "max_connections",
                1..=pool_size as u64,
                &format!("keep it between 1 and the database's pool_size ({pool_size}): a route holds at most that many of its connections"),
            )
        })
        .and_then(|n| usize::try_from(n).ok())
        .and_then(NonZeroUsize::new);
    Some(TableConfig {
        max_connections,
        scope,
        database: t.database.value.clone(),
        postgres: Arc::clone(databases.get(&t.database.value)?),
        codec: Arc::clone(cursors?),
        name: t.name.value.clone(),
        columns,
        default_fields,
        key,
        filters,
        default_limit,
        max_limit,
        formats,
        chunk_rows,
        on_missing_index,
        via,
        places,
    })
}
