//! How client values enter statements ([`Values`]): bind parameters sent as text and cast to
//! their column's type, or, for `COPY`, literals that cannot end early ([`literal`]).

use std::fmt::Write as _;

use super::Statement;
use crate::table::catalog::Catalog;

/// Where a statement's values go: bind parameters (`$n`), or, for `COPY`, which takes none,
/// literals written in place ([`literal`]).
pub(super) struct Values {
    pub(super) params: Vec<String>,
    pub(super) inline: bool,
}

impl Values {
    /// `value` as text: `$n` (pushed), or its literal.
    pub(super) fn text(&mut self, value: &str) -> String {
        if self.inline {
            literal(value)
        } else {
            self.params.push(value.to_owned());
            format!("${}", self.params.len())
        }
    }

    /// `(value::text)::type`: the value cast to its column's type, which checks it.
    pub(super) fn typed(&mut self, value: &str, sql_type: &str) -> String {
        format!("({}::text)::{sql_type}", self.text(value))
    }

    /// `value` as a value of `column`: cast to its type ([`Catalog::cast`]); or an array
    /// written as a JSON array (as exports write them) or a row written as a JSON object, read
    /// by PostgreSQL's own JSON mapping (`json_to_record`, `json_populate_record`) into the
    /// column's type: nested arrays, `json`/`jsonb` elements and row elements read back as
    /// they were written (a row's fields keep their declared sizes, as its text form's do).
    pub(super) fn of(&mut self, value: &str, column: &str, catalog: &Catalog) -> String {
        let Some(c) = catalog.columns.get(column) else {
            return self.typed(value, "pg_catalog.text");
        };
        match &c.element {
            // A `json[]`/`jsonb[]`: one dimension, each element's JSON text its value (the
            // mapping below would read an element that is an array as a second dimension).
            Some(element) if c.array && json_array(value) && is_json(element) => format!(
                "ARRAY(SELECT (e.v)::{element} FROM json_array_elements(({}::text)::json) \
                 WITH ORDINALITY AS e(v, i) ORDER BY e.i)",
                self.text(value)
            ),
            Some(_) if c.array && json_array(value) => format!(
                "(SELECT a.v FROM json_to_record(json_build_object('v', ({}::text)::json)) \
                 AS a(v {}))",
                self.text(value),
                c.cast
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

/// Whether an array's element type (as a cast names it) is `json` or `jsonb`.
fn is_json(element: &str) -> bool {
    matches!(element, "pg_catalog.json" | "pg_catalog.jsonb")
}

/// Whether `value` is written as a JSON array, not as an array's text form with its bounds
/// (`[0:1]={1,2}`).
fn json_array(value: &str) -> bool {
    let Some(rest) = value.strip_prefix('[') else {
        return false;
    };
    let bound = rest.trim_start_matches(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    !(bound.len() < rest.len() && bound.starts_with(':'))
}

/// `SELECT <value as a value of column>, …`: how [`super::select`] reads client values, on
/// their own (a `None` value: the same cast of NULL, which fails only when the type itself does
/// not serve). PostgreSQL casts every one, so the statement fails when any value does.
pub(crate) fn cast_values<'a>(
    catalog: &Catalog,
    cast: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> Statement {
    let mut values = Values {
        params: Vec::new(),
        inline: false,
    };
    let mut sql = String::from("SELECT ");
    for (i, (column, value)) in cast.into_iter().enumerate() {
        let expression = match value {
            Some(value) => values.of(value, column, catalog),
            None => format!("(NULL::text)::{}", catalog.cast(column)),
        };
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "{expression} IS NULL");
    }
    Statement {
        sql,
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
