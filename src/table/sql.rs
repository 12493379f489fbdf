//! The statements a table resource runs. Every client value is a bind parameter, sent as text
//! and cast to its column's type inside the statement (`($1::text)::integer`); the identifiers
//! are allow-listed names from the config, quoted anyway. `COPY`, which takes no parameters,
//! gets the same statement with each parameter written as a literal that cannot end early
//! ([`values::literal`]), the casts still typing and checking it.
//!
//! Keyset order: `WHERE (k1, k2) > ($1, $2) ORDER BY k1, k2 LIMIT n` when every key column
//! sorts the same way; mixed ascending and descending keys use the expanded form
//! `k1 > $1 OR (k1 = $1 AND k2 < $2)`.

use std::fmt::Write as _;

use super::catalog::Catalog;
use crate::table::config::{FilterOp, TableConfig};
use conditions::ordered;
use values::Values;
pub(crate) use values::cast_values;
#[cfg(test)]
use values::literal;

/// `name` as a quoted SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `table` or `schema.table`, quoted.
pub(crate) fn quote_table(name: &str) -> String {
    match name.split_once('.') {
        Some((schema, table)) => format!("{}.{}", quote_ident(schema), quote_ident(table)),
        None => quote_ident(name),
    }
}

/// One filter of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    /// The column.
    pub(crate) column: String,
    /// The operator.
    pub(crate) op: FilterOp,
    /// The value: one (for `is`: `null` or `not_null`), or for `in` each item.
    pub(crate) values: Vec<String>,
}

impl Filter {
    /// `column op $n` with an empty value: the shape of a filter, for a statement the
    /// catalog check prepares but never runs.
    pub(crate) fn shape(column: &str, op: FilterOp) -> Self {
        Self {
            column: column.to_owned(),
            op,
            values: vec![String::new()],
        }
    }
}

/// What a statement produces per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One JSON object of the fields (pages: the key columns need not be among them).
    Json,
    /// One JSON object of the columns, key columns among them (NDJSON exports).
    Row,
    /// One text value per column, as CSV writes it.
    Csv,
    /// The CSV columns alone inside `COPY (…) TO STDOUT (FORMAT csv)`, every value inlined as a
    /// literal ([`values::literal`]): PostgreSQL writes the CSV itself.
    CopyCsv,
    /// The columns as NDJSON reads them from `COPY` ([`super::ndjson::Kind::selected`]), inside
    /// `COPY (…) TO STDOUT (FORMAT csv)` like [`Shape::CopyCsv`].
    CopyNdjson,
}

/// A statement and its text parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    /// The SQL.
    pub(crate) sql: String,
    /// The parameters, in order.
    pub(crate) params: Vec<String>,
}

/// Where a statement's rows lie in key order: after the key `after` (the last one served),
/// and up to and including the key `until` (an export chunk's last, found by [`boundary`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bounds<'a> {
    /// Rows after this key.
    pub(crate) after: Option<&'a [String]>,
    /// Rows up to this key, itself included.
    pub(crate) until: Option<&'a [String]>,
}

/// The rows after `after` (the last key served), filtered, in key order, at most `limit`: the
/// `columns` in `shape`, then the key columns as text (for the next cursor or chunk).
pub(crate) fn select(
    table: &TableConfig,
    catalog: &Catalog,
    columns: &[String],
    shape: Shape,
    filters: &[Filter],
    after: Option<&[String]>,
    limit: u32,
) -> Statement {
    let bounds = Bounds { after, until: None };
    select_within(table, catalog, columns, shape, filters, bounds, limit)
}

/// [`select`] of the rows within `bounds`.
pub(crate) fn select_within(
    table: &TableConfig,
    catalog: &Catalog,
    columns: &[String],
    shape: Shape,
    filters: &[Filter],
    bounds: Bounds<'_>,
    limit: u32,
) -> Statement {
    let copy = matches!(shape, Shape::CopyCsv | Shape::CopyNdjson);
    let mut values = Values {
        params: Vec::new(),
        inline: copy,
    };
    let mut sql = select_list(table, catalog, columns, shape);
    ordered(&mut sql, table, catalog, filters, bounds, &mut values);
    let _ = write!(
        sql,
        " LIMIT {}",
        values.typed(&limit.to_string(), "pg_catalog.int8")
    );
    if shape == Shape::Row {
        // The derived table keeps its order (no join, no grouping above it). `j.*`, not `j`:
        // a served column named `j` would be read instead of the row.
        let keys: Vec<String> = table
            .key
            .iter()
            .map(|k| export_key(catalog, "j.", &k.column, shape))
            .collect();
        sql = format!(
            "SELECT row_to_json(j.*)::text, {} FROM ({sql}) AS j",
            keys.join(", ")
        );
    }
    if copy {
        sql = format!("COPY ({sql}) TO STDOUT (FORMAT csv)");
    }
    Statement {
        sql,
        params: values.params,
    }
}

/// An export's key column as text, as the chunks of `shape` read it back: as `COPY` writes the
/// column in that shape, or, for query chunks, as its type's output function writes it
/// (`concat` calls it; `::text` has casts of its own for some types: `true` for `t`,
/// `10.0.0.1/32` for `10.0.0.1`, no padding for `char(n)`). A range's end ([`boundary`]) and
/// its chunks' last keys must read alike, or a range whose last key was sent would not look
/// done and cost one more, empty, statement.
pub(crate) fn export_key(catalog: &Catalog, alias: &str, column: &str, shape: Shape) -> String {
    let reference = format!("{alias}{}", quote_ident(column));
    let copied = match shape {
        Shape::CopyCsv => catalog
            .columns
            .get(column)
            .map_or_else(|| reference.clone(), |c| c.csv(&reference, true)),
        Shape::CopyNdjson => super::ndjson::Kind::selected(catalog.base_type(column), &reference),
        Shape::Json | Shape::Csv | Shape::Row => reference.clone(),
    };
    // Read as text: the bare column through its output function, as COPY writes it.
    if copied == reference {
        format!("concat({reference})")
    } else {
        copied
    }
}

/// The key of the row `offset` rows into those after `after`, filtered, in key order (each
/// column as text, as an export's chunks give keys: [`export_key`]): the last key of an export
/// chunk of `offset + 1` rows, found by walking the key's index without reading the rows out,
/// so the chunk's statement can run while the next boundary is sought. No row: fewer rows are
/// left.
pub(crate) fn boundary(
    table: &TableConfig,
    catalog: &Catalog,
    filters: &[Filter],
    after: Option<&[String]>,
    offset: u32,
    shape: Shape,
) -> Statement {
    let mut values = Values {
        params: Vec::new(),
        inline: false,
    };
    let keys: Vec<String> = table
        .key
        .iter()
        .map(|k| export_key(catalog, "r.", &k.column, shape))
        .collect();
    let mut sql = format!("SELECT {}", keys.join(", "));
    let bounds = Bounds { after, until: None };
    ordered(&mut sql, table, catalog, filters, bounds, &mut values);
    let _ = write!(
        sql,
        " LIMIT 1 OFFSET {}",
        values.typed(&offset.to_string(), "pg_catalog.int8")
    );
    Statement {
        sql,
        params: values.params,
    }
}

/// `SELECT` and the list of what each row carries in `shape` (for `Shape::Row`, the inner list
/// `row_to_json` reads).
fn select_list(table: &TableConfig, catalog: &Catalog, columns: &[String], shape: Shape) -> String {
    let column = |c: &str| catalog.columns.get(c);
    let numeric = |c: &str| column(c).is_some_and(|c| c.numeric());
    let mut list = Vec::with_capacity(columns.len() + table.key.len());
    match shape {
        Shape::Json => {
            let pairs: Vec<String> = columns
                .iter()
                .map(|c| {
                    let cast = if numeric(c) { "::text" } else { "" };
                    format!("'{c}', {}{cast}", quote_ident(c))
                })
                .collect();
            list.push(format!("json_build_object({})::text", pairs.join(", ")));
        }
        Shape::Row => {
            // Filled in below, around the inner statement.
        }
        Shape::Csv | Shape::CopyCsv => list.extend(columns.iter().map(|c| {
            let reference = format!("r.{}", quote_ident(c));
            column(c).map_or_else(
                || format!("{reference}::text"),
                |c| c.csv(&reference, shape == Shape::CopyCsv),
            )
        })),
        Shape::CopyNdjson => list.extend(columns.iter().map(|c| {
            super::ndjson::Kind::selected(catalog.base_type(c), &format!("r.{}", quote_ident(c)))
        })),
    }
    match shape {
        Shape::Json => list.extend(
            table
                .key
                .iter()
                .map(|k| format!("{}::text", quote_ident(&k.column))),
        ),
        Shape::Csv => list.extend(
            table
                .key
                .iter()
                .map(|k| export_key(catalog, "", &k.column, shape)),
        ),
        _ => {}
    }
    if shape == Shape::Row {
        // `row_to_json` over a derived table: compact JSON, and cheaper per row than
        // `json_build_object`. Numeric columns as text, so no digit is lost.
        let inner: Vec<String> = columns
            .iter()
            .map(|c| {
                let q = quote_ident(c);
                if numeric(c) {
                    format!("r.{q}::text AS {q}")
                } else {
                    format!("r.{q}")
                }
            })
            .collect();
        format!("SELECT {}", inner.join(", "))
    } else {
        format!("SELECT {}", list.join(", "))
    }
}

mod conditions;
mod values;

#[cfg(test)]
mod tests;
