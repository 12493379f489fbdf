//! A table request's query string, checked against the route's allow-lists: fields, filters
//! and operators, `limit`, `cursor`, and for exports `format` and `after`. `after` and the
//! items of `in` are one RFC 4180 record, each value written as the CSV export writes it, so
//! a value may hold commas and quotes, and the empty string is a value.

use std::collections::BTreeSet;

use super::resource::{Offered, Source};
use super::sql::Filter;
use super::{Catalog, PgError};
use crate::table::config::{ExportFormat, FilterOp, TableConfig};

/// Most filters one request may carry.
const MAX_FILTERS: usize = 32;

/// Most values one `in` filter may list.
pub(crate) const MAX_IN_ITEMS: usize = 100;

/// The values of `text`, one RFC 4180 record (`a,"b,c",""`): quoted fields may hold commas and
/// quotes (doubled), an empty field is the empty string. `None` when it is not one record.
fn record(text: &str) -> Option<Vec<String>> {
    let line = format!("{text}\n");
    let fields = super::csv::record(line.as_bytes())?;
    Some(fields.into_iter().map(Option::unwrap_or_default).collect())
}

/// A request's parameters, checked against the table's allow-lists.
#[derive(Debug, Default)]
pub(super) struct Params {
    pub(super) fields: Option<Vec<String>>,
    pub(super) filters: Vec<Filter>,
    pub(super) limit: Option<u32>,
    pub(super) cursor: Option<String>,
    pub(super) format: Option<ExportFormat>,
    pub(super) after: Option<Vec<String>>,
    /// The raw `name=value` pieces cursors are bound to (all but `cursor` and `limit`).
    pub(super) binding: Vec<String>,
    /// What else cursors are bound to, which the query does not choose: the table and its
    /// key, the scope's value.
    pub(super) bound: Vec<String>,
    /// The raw pieces a next-page link repeats (all but `cursor`).
    pub(super) kept: Vec<String>,
    /// Each client value as it meets a column, to name the one the database refuses.
    pub(super) offered: Vec<Offered>,
}

/// Refuses a value for a `jsonb` column that holds `\u0000` (an escaped NUL, which no
/// PostgreSQL text can hold): the database would refuse it as untranslatable text (22P05), the
/// code stored text that is not UTF-8 also gives, so it is refused here, before the query.
pub(super) fn refuse_nul_escapes(offered: &[Offered], catalog: &Catalog) -> Result<(), PgError> {
    for o in offered {
        let json = catalog.columns.get(&o.column).is_some_and(|c| c.json);
        if json && escapes_nul(&o.value) {
            return Err(PgError::BadValue {
                parameter: o.parameter(),
                message: "JSON text holds \\u0000, which PostgreSQL cannot store".to_owned(),
            });
        }
    }
    Ok(())
}

/// Whether JSON text `text` writes a NUL as `\u0000` (an escaped backslash, `\\u0000`, is
/// not one).
fn escapes_nul(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = memchr::memchr(b'\\', &bytes[i..]) {
        let at = i + at;
        if bytes.get(at + 1) == Some(&b'u') && bytes.get(at + 2..at + 6) == Some(b"0000") {
            return true;
        }
        // Past the escaped character, whatever it is.
        i = at + 2;
        if i >= bytes.len() {
            break;
        }
    }
    false
}

fn allowed(table: &TableConfig) -> String {
    let filters: Vec<String> = table
        .filters
        .iter()
        .map(|(c, ops)| {
            format!(
                "{c} ({})",
                ops.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    format!(
        "fields (any of {}), limit (1 to {}), cursor, format and after on exports, and filters: {}",
        table.columns.join(", "),
        table.max_limit,
        if filters.is_empty() {
            "none".to_owned()
        } else {
            filters.join("; ")
        }
    )
}

/// A refusal naming what is wrong and what the route takes.
type Bad<'a> = &'a dyn Fn(String) -> PgError;

/// Reads a page's or an export's query: the fields, limit, cursor, format, `after` and filters,
/// each checked against the table's config.
pub(super) fn parse(table: &TableConfig, query: &str, export: bool) -> Result<Params, PgError> {
    let bad =
        |what: String| PgError::BadRequest(format!("{what}; this route takes {}", allowed(table)));
    let mut params = Params::default();
    let mut seen = BTreeSet::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = decode(piece, &bad)?;
        let reserved = matches!(
            name.as_str(),
            "fields" | "limit" | "cursor" | "format" | "after"
        );
        if reserved && !seen.insert(name.clone()) {
            return Err(bad(format!("`{name}` is given twice")));
        }
        if name != "cursor" {
            params.kept.push(piece.to_owned());
            if name != "limit" {
                params.binding.push(piece.to_owned());
            }
        }
        match name.as_str() {
            "fields" => params.fields = Some(fields(table, &value, &bad)?),
            "limit" if !export => params.limit = Some(limit(table, &value, &bad)?),
            "cursor" if !export => params.cursor = Some(value),
            "format" if export => params.format = Some(format(table, &value, &bad)?),
            "after" if export => after(table, &value, &mut params, &bad)?,
            _ if reserved => {
                return Err(bad(format!(
                    "`{name}` does not apply to {}",
                    if export { "exports" } else { "pages" }
                )));
            }
            column => filter(table, column, &value, &mut params, &bad)?,
        }
    }
    Ok(params)
}

/// A piece's name and value, percent-decoded. Only that: `+` stays a plus
/// (`created_at=gte.2026-01-01T00:00:00+02:00`). Bytes that are not UTF-8 (`%FF`) are refused,
/// never replaced by U+FFFD and matched.
fn decode(piece: &str, bad: Bad<'_>) -> Result<(String, String), PgError> {
    let (raw_name, raw_value) = piece.split_once('=').unwrap_or((piece, ""));
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(std::borrow::Cow::into_owned)
            .map_err(|_| {
                bad(format!(
                    "{s:?} is not UTF-8 once percent-decoded: encode text as UTF-8 (é is %C3%A9)"
                ))
            })
    };
    let (name, value) = (decode(raw_name)?, decode(raw_value)?);
    // PostgreSQL text holds no NUL; refused here, so a NUL the database meets (an invalid
    // byte sequence) is always its own stored text, never the client's value.
    if value.contains('\0') || name.contains('\0') {
        return Err(bad(format!(
            "`{name}` holds a NUL byte (%00), which no value can"
        )));
    }
    Ok((name, value))
}

/// `fields`: served columns, each kept once.
fn fields(table: &TableConfig, value: &str, bad: Bad<'_>) -> Result<Vec<String>, PgError> {
    let mut fields = Vec::new();
    for f in value.split(',') {
        if !table.columns.iter().any(|c| c == f) {
            return Err(bad(format!(
                "`fields` names {f:?}, which is not a field of this route"
            )));
        }
        if !fields.iter().any(|x: &String| x == f) {
            fields.push(f.to_owned());
        }
    }
    Ok(fields)
}

/// `limit`: digits, from 1 to the route's `max_limit`.
fn limit(table: &TableConfig, value: &str, bad: Bad<'_>) -> Result<u32, PgError> {
    let limit = value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=table.max_limit).contains(n) && value.bytes().all(|b| b.is_ascii_digit()));
    limit.ok_or_else(|| {
        bad(format!(
            "`limit` is {value:?}: write a whole number from 1 to {}",
            table.max_limit
        ))
    })
}

/// `format`: one the route offers.
fn format(table: &TableConfig, value: &str, bad: Bad<'_>) -> Result<ExportFormat, PgError> {
    let format = match value {
        "csv" => ExportFormat::Csv,
        "ndjson" => ExportFormat::Ndjson,
        _ => return Err(bad(format!("`format` is {value:?}: write csv or ndjson"))),
    };
    if !table.formats.contains(&format) {
        return Err(bad(format!(
            "`format` {value} is not offered by this route"
        )));
    }
    Ok(format)
}

/// `after`: the key of the last row received, one CSV record.
fn after(
    table: &TableConfig,
    value: &str,
    params: &mut Params,
    bad: Bad<'_>,
) -> Result<(), PgError> {
    let values = record(value).filter(|v| v.len() == table.key.len());
    let Some(values) = values else {
        let key: Vec<&str> = table.key.iter().map(|k| k.column.as_str()).collect();
        return Err(bad(format!(
            "`after` is {value:?}: write the key of the last row received as one CSV record of {} value(s) ({}), each as the export wrote it, quoted (\"a,b\") when it holds a comma or a quote",
            key.len(),
            key.join(", ")
        )));
    };
    for (k, v) in table.key.iter().zip(&values) {
        params.offered.push(Offered {
            source: Source::After,
            column: k.column.clone(),
            value: v.clone(),
        });
    }
    params.after = Some(values);
    Ok(())
}

/// A filter, `COLUMN=OP.VALUE`, with an operator the route allows on the column.
fn filter(
    table: &TableConfig,
    column: &str,
    value: &str,
    params: &mut Params,
    bad: Bad<'_>,
) -> Result<(), PgError> {
    let Some(ops) = table.filters.get(column) else {
        return Err(bad(format!(
            "`{column}` is not a parameter or filter of this route"
        )));
    };
    let Some((op, operand)) = value.split_once('.') else {
        return Err(bad(format!(
            "the filter `{column}` is {value:?}: write {column}=OP.VALUE, such as {column}=eq.1"
        )));
    };
    let op = FilterOp::parse(op)
        .filter(|op| ops.contains(op))
        .ok_or_else(|| {
            bad(format!(
                "the filter `{column}` has operator {op:?}, which this route does not allow on it"
            ))
        })?;
    if op == FilterOp::Is && !matches!(operand, "null" | "not_null") {
        return Err(bad(format!(
            "the filter `{column}` is {value:?}: `is` takes null or not_null"
        )));
    }
    let values = if op == FilterOp::In {
        record(operand).filter(|items| items.len() <= MAX_IN_ITEMS).ok_or_else(|| {
            bad(format!(
                "the filter `{column}` is {value:?}: `in` takes one CSV record of at most {MAX_IN_ITEMS} values (in.a,b,\"c,d\"), quoted when one holds a comma or a quote"
            ))
        })?
    } else {
        vec![operand.to_owned()]
    };
    if params.filters.len() == MAX_FILTERS {
        return Err(bad(format!("more than {MAX_FILTERS} filters")));
    }
    if op != FilterOp::Is {
        params.offered.extend(values.iter().map(|value| Offered {
            source: Source::Filter(op),
            column: column.to_owned(),
            value: value.clone(),
        }));
    }
    params.filters.push(Filter {
        column: column.to_owned(),
        op,
        values,
    });
    Ok(())
}
