//! The `WHERE` and `ORDER BY` of a statement: each filter's condition and the keyset bounds
//! (after a key, up to a key), in the forms an index walks in key order.

use std::fmt::Write as _;

use super::values::Values;
use super::{Bounds, Filter, quote_ident, quote_table};
use crate::table::catalog::Catalog;
use crate::table::config::{FilterOp, TableConfig};

/// ` FROM … WHERE … ORDER BY …` of the filtered rows within `bounds`, in key order.
pub(super) fn ordered(
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
