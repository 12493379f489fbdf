//! The statements a table resource runs. Every client value is a bind parameter, sent as text
//! and cast to its column's type inside the statement (`($1::text)::integer`); the identifiers
//! are allow-listed names from the config, quoted anyway. `COPY`, which takes no parameters,
//! gets the same statement with each parameter written as a literal that cannot end early
//! ([`literal`]), the casts still typing and checking it.
//!
//! Keyset order: `WHERE (k1, k2) > ($1, $2) ORDER BY k1, k2 LIMIT n` when every key column
//! sorts the same way; mixed ascending and descending keys use the expanded form
//! `k1 > $1 OR (k1 = $1 AND k2 < $2)`.

use std::fmt::Write as _;

use super::catalog::Catalog;
use crate::table::config::{FilterOp, TableConfig};

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
    /// literal ([`literal`]): PostgreSQL writes the CSV itself.
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

/// Where a statement's values go: bind parameters (`$n`), or, for `COPY`, which takes none,
/// literals written in place ([`literal`]).
struct Values {
    params: Vec<String>,
    inline: bool,
}

impl Values {
    /// `value` as text: `$n` (pushed), or its literal.
    fn text(&mut self, value: &str) -> String {
        if self.inline {
            literal(value)
        } else {
            self.params.push(value.to_owned());
            format!("${}", self.params.len())
        }
    }

    /// `(value::text)::type`: the value cast to its column's type, which checks it.
    fn typed(&mut self, value: &str, sql_type: &str) -> String {
        format!("({}::text)::{sql_type}", self.text(value))
    }

    /// `value` as a value of `column`: cast to its type ([`Catalog::cast`]); or an array
    /// written as a JSON array (as exports write them), each element cast to the element type
    /// (one dimension); or a row written as a JSON object, read by PostgreSQL's own JSON
    /// mapping into the row type (whose fields keep their declared sizes, as its text form's
    /// do).
    fn of(&mut self, value: &str, column: &str, catalog: &Catalog) -> String {
        let Some(c) = catalog.columns.get(column) else {
            return self.typed(value, "pg_catalog.text");
        };
        match &c.element {
            Some(element) if c.array && json_array(value) => format!(
                "ARRAY(SELECT (e.v)::{element} FROM json_array_elements_text(({}::text)::json) \
                 WITH ORDINALITY AS e(v, i) ORDER BY e.i)",
                self.text(value)
            ),
            _ if c.composite && value.starts_with('{') => format!(
                "json_populate_record(NULL::{}, ({}::text)::json)",
                c.cast,
                self.text(value)
            ),
            _ => self.typed(value, &c.cast),
        }
    }
}

/// Whether `value` is an array written as JSON (`[1,2]`), not as PostgreSQL writes one with
/// its bounds (`[0:1]={1,2}`).
fn json_array(value: &str) -> bool {
    let Some(rest) = value.strip_prefix('[') else {
        return false;
    };
    let bound = rest.trim_start_matches(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    !(bound.len() < rest.len() && bound.starts_with(':'))
}

/// `SELECT <value as a value of column>`: how [`select`] reads one client value, on its own
/// (`None`: the same cast of NULL, which fails only when the type itself does not serve).
pub(crate) fn one_value(catalog: &Catalog, column: &str, value: Option<&str>) -> Statement {
    let mut values = Values {
        params: Vec::new(),
        inline: false,
    };
    let expression = match value {
        Some(value) => values.of(value, column, catalog),
        None => format!("(NULL::text)::{}", catalog.cast(column)),
    };
    Statement {
        sql: format!("SELECT {expression} IS NULL"),
        params: values.params,
    }
}

/// `value` as a string literal, for `COPY`. A value holding no quote, backslash or NUL is
/// written `'value'` (nothing in it can end the literal, whatever
/// `standard_conforming_strings` says, and the planner sees a constant); any other is written
/// as hex digits PostgreSQL decodes, `convert_from(decode('…', 'hex'), 'UTF8')`, so no byte of
/// it is ever read as SQL. The statement's casts (`('1'::text)::bigint`) still type and check
/// it. Written in place as the statement is built, never substituted into finished text, so
/// nothing in a type name the catalog gives (`format_type`) can be mistaken for a value's
/// place.
pub(crate) fn literal(value: &str) -> String {
    if !value.contains(['\'', '\\', '\0']) {
        return format!("'{value}'");
    }
    let mut out = String::with_capacity(value.len() * 2 + 40);
    out.push_str("convert_from(decode('");
    for b in value.bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out.push_str("', 'hex'), 'UTF8')");
    out
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
        // The derived table keeps its order (no join, no grouping above it).
        let keys: Vec<String> = table
            .key
            .iter()
            .map(|k| format!("j.{}::text", quote_ident(&k.column)))
            .collect();
        sql = format!(
            "SELECT row_to_json(j)::text, {} FROM ({sql}) AS j",
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

/// The key of the row `offset` rows into those after `after`, filtered, in key order (each
/// column as text, as [`select`] gives keys): the last key of an export chunk of `offset + 1`
/// rows, found by walking the key's index without reading the rows out, so the chunk's
/// statement can run while the next boundary is sought. No row: fewer rows are left.
pub(crate) fn boundary(
    table: &TableConfig,
    catalog: &Catalog,
    filters: &[Filter],
    after: Option<&[String]>,
    offset: u32,
) -> Statement {
    let mut values = Values {
        params: Vec::new(),
        inline: false,
    };
    let keys: Vec<String> = table
        .key
        .iter()
        .map(|k| format!("r.{}::text", quote_ident(&k.column)))
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

/// ` FROM … WHERE … ORDER BY …` of the filtered rows within `bounds`, in key order.
fn ordered(
    sql: &mut String,
    table: &TableConfig,
    catalog: &Catalog,
    filters: &[Filter],
    bounds: Bounds<'_>,
    values: &mut Values,
) {
    // The table is aliased `r` and ORDER BY names `r.` columns: a bare name there would mean the
    // output column of that name (the key's text form), sorting numbers as text.
    let relation = quote_table(&table.name);
    let _ = write!(sql, " FROM {relation} AS r");
    let mut conditions: Vec<String> = filters
        .iter()
        .map(|f| condition(f, values, catalog))
        .collect();
    if let Some(after) = bounds.after {
        conditions.extend(key_bound(table, after, values, catalog, false));
    }
    if let Some(until) = bounds.until {
        conditions.extend(key_bound(table, until, values, catalog, true));
    }
    if !conditions.is_empty() {
        let _ = write!(sql, " WHERE {}", conditions.join(" AND "));
    }
    let order: Vec<String> = table
        .key
        .iter()
        .map(|k| {
            format!(
                "r.{}{}",
                quote_ident(&k.column),
                if k.descending { " DESC" } else { "" }
            )
        })
        .collect();
    let _ = write!(sql, " ORDER BY {}", order.join(", "));
}

/// `SELECT` and the list of what each row carries in `shape` (for `Shape::Row`, the inner list
/// `row_to_json` reads).
fn select_list(table: &TableConfig, catalog: &Catalog, columns: &[String], shape: Shape) -> String {
    let column = |c: &str| catalog.columns.get(c);
    let numeric = |c: &str| column(c).is_some_and(|c| c.numeric);
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
            super::ndjson::Kind::selected(catalog.sql_type(c), &format!("r.{}", quote_ident(c)))
        })),
    }
    if shape == Shape::Json || shape == Shape::Csv {
        list.extend(
            table
                .key
                .iter()
                .map(|k| format!("{}::text", quote_ident(&k.column))),
        );
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

/// One filter's condition; its values bound, or inlined as literals for `COPY`.
fn condition(f: &Filter, values: &mut Values, catalog: &Catalog) -> String {
    let column = quote_ident(&f.column);
    let one = f.values.first().map_or("", String::as_str);
    match f.op {
        FilterOp::Is if one == "null" => format!("{column} IS NULL"),
        FilterOp::Is => format!("{column} IS NOT NULL"),
        FilterOp::In => {
            let items: Vec<String> = f
                .values
                .iter()
                .map(|v| values.of(v, &f.column, catalog))
                .collect();
            format!("{column} IN ({})", items.join(", "))
        }
        op => {
            let symbol = match op {
                FilterOp::Eq => "=",
                FilterOp::Neq => "<>",
                FilterOp::Lt => "<",
                FilterOp::Lte => "<=",
                FilterOp::Gt => ">",
                _ => ">=",
            };
            format!("{column} {symbol} {}", values.of(one, &f.column, catalog))
        }
    }
}

/// The conditions of the rows after `key` in key order, or (`through`) of the rows up to it,
/// itself included: one row comparison when every key column sorts the same way, else the
/// expanded form with the first column's bound on its own.
fn key_bound(
    table: &TableConfig,
    key: &[String],
    values: &mut Values,
    catalog: &Catalog,
    through: bool,
) -> Vec<String> {
    let bound: Vec<(String, String, bool)> = table
        .key
        .iter()
        .zip(key)
        .map(|(k, v)| {
            (
                quote_ident(&k.column),
                values.of(v, &k.column, catalog),
                k.descending,
            )
        })
        .collect();
    let same = bound.iter().all(|(_, _, d)| *d == bound[0].2);
    if same {
        let (cols, vals): (Vec<_>, Vec<_>) = bound
            .iter()
            .map(|(c, v, _)| (c.as_str(), v.as_str()))
            .unzip();
        let op = match (bound[0].2, through) {
            (false, false) => ">",
            (true, false) => "<",
            (false, true) => "<=",
            (true, true) => ">=",
        };
        return vec![format!("({}) {op} ({})", cols.join(", "), vals.join(", "))];
    }
    let mut alternatives = Vec::new();
    for i in 0..bound.len() {
        let mut terms: Vec<String> = bound[..i]
            .iter()
            .map(|(c, v, _)| format!("{c} = {v}"))
            .collect();
        let (c, v, descending) = &bound[i];
        terms.push(format!("{c} {} {v}", if *descending { "<" } else { ">" }));
        alternatives.push(format!("({})", terms.join(" AND ")));
    }
    // The first key column's bound on its own as well: the planner can start (or stop) the
    // index scan there, so a deep page costs what the first one does.
    let (c, v, descending) = &bound[0];
    let first = if *descending == through { ">=" } else { "<=" };
    let rest = alternatives.join(" OR ");
    vec![
        format!("{c} {first} {v}"),
        if through {
            format!("NOT ({rest})")
        } else {
            format!("({rest})")
        },
    ]
}

#[cfg(test)]
mod tests;
