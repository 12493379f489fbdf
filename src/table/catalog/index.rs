//! Whether the keyset query walks an index: the planner is asked for its generic plan of the
//! very statement a deep page runs (`WHERE scope = $1 AND (key) > ($2, …) ORDER BY key`), with
//! scans and sorts priced out (`enable_seqscan` and `enable_sort` off, so a small or empty table
//! does not fool it). The plan must read the index in key order (no sort) and start at the
//! cursor's position (the key's bound is an index condition, so a page at any depth costs what
//! the first one does; a cast that changed the value's type would leave it a filter), and with
//! a scope, the index must start with the scope column (a page reads one scope's entries only).

use deadpool_postgres::Object;
use tokio_postgres::types::Type;

use super::{Catalog, CheckError, index_hint, refused};
use crate::table::config::{FilterOp, MissingIndex, TableConfig};
use crate::table::sql::{self, Filter, Shape, quote_table};

/// A statement name no other check, in this process or another pagegate's sharing the server
/// session behind a pooler, is using: the process id, the time and a counter. Every statement
/// a check prepares is deallocated before its transaction ends.
pub(super) fn statement_name(what: &str) -> String {
    static CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "pagegate_{what}_{}_{nanos}_{}",
        std::process::id(),
        CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The statement a deep page of `table` runs, every value a parameter.
pub(super) fn keyset(table: &TableConfig, catalog: &Catalog) -> sql::Statement {
    let filters: Vec<Filter> = table
        .scope
        .iter()
        .map(|s| Filter::shape(&s.column, FilterOp::Eq))
        .collect();
    let key: Vec<String> = table.key.iter().map(|k| k.column.clone()).collect();
    let after = vec![String::new(); key.len()];
    sql::select(
        table,
        catalog,
        &key,
        Shape::Json,
        &filters,
        Some(&after),
        101,
    )
}

pub(super) async fn check(
    client: &mut Object,
    table: &TableConfig,
    catalog: &Catalog,
) -> Result<(), CheckError> {
    let plan = explain(client, &keyset(table, catalog)).await?;
    let mut nodes = Vec::new();
    walk(&plan, &mut nodes);
    let sorted = nodes
        .iter()
        .any(|n| matches!(n.kind.as_str(), "Sort" | "Incremental Sort"));
    let first = table.key.first().map_or("", |k| k.column.as_str());
    let bounded = nodes
        .iter()
        .any(|n| n.condition.as_deref().is_some_and(|c| names(c, first)));
    let unscoped = match &table.scope {
        None => false,
        Some(scope) => !leads_with(client, table, &nodes, &scope.column).await?,
    };
    if !(unscoped || sorted || !bounded) {
        return Ok(());
    }
    let reason = if let (Some(scope), true) = (&table.scope, unscoped || sorted) {
        format!(
            "{}`scope` names `{}`, but the planner walks no index of `{}` that starts with it in key order (so every page would read every scope's rows); such an index: {}",
            table.places.at(table.places.scope),
            scope.column,
            table.name,
            index_hint(table)
        )
    } else if sorted || unscoped {
        format!(
            "{}no index of `{}` walks the key in order, so every page would scan and sort the table: {}",
            table.places.at(table.places.key.first().copied()),
            table.name,
            index_hint(table)
        )
    } else {
        format!(
            "{}the index of `{}` is walked in key order, but the cursor's position is no index condition (so a deep page would read every row before it): {}",
            table.places.at(table.places.key.first().copied()),
            table.name,
            index_hint(table)
        )
    };
    if table.on_missing_index == MissingIndex::Refuse {
        return Err(CheckError::Invalid(reason));
    }
    tracing::warn!(table = %table.name, "{reason} (served anyway: on_missing_index is warn)");
    Ok(())
}

/// The generic plan of a page's statement, with sequential scans and sorts priced out: in a
/// transaction rolled back, the statement prepared and deallocated on this session.
async fn explain(
    client: &mut Object,
    statement: &sql::Statement,
) -> Result<serde_json::Value, CheckError> {
    let transaction = client.transaction().await.map_err(refused)?;
    transaction
        .batch_execute(
            "SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off; \
             SET LOCAL plan_cache_mode = force_generic_plan",
        )
        .await
        .map_err(refused)?;
    let name = statement_name("index_check");
    transaction
        .batch_execute(&format!("PREPARE {name} AS {}", statement.sql))
        .await
        .map_err(refused)?;
    let nulls = vec!["NULL"; statement.params.len()].join(", ");
    // In a savepoint: whatever EXPLAIN does, the statement is deallocated in this transaction,
    // on this server session.
    transaction
        .batch_execute("SAVEPOINT pagegate_explain")
        .await
        .map_err(refused)?;
    let explained = transaction
        .simple_query(&format!("EXPLAIN (FORMAT JSON) EXECUTE {name}({nulls})"))
        .await;
    if explained.is_err() {
        transaction
            .batch_execute("ROLLBACK TO SAVEPOINT pagegate_explain")
            .await
            .map_err(refused)?;
    }
    transaction
        .batch_execute(&format!("DEALLOCATE {name}"))
        .await
        .map_err(refused)?;
    let rows = explained.map_err(refused)?;
    let plan = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default();
    transaction.rollback().await.map_err(refused)?;
    Ok(serde_json::from_str(&plan).unwrap_or_default())
}

/// Whether every index the plan walks starts with the scope column.
async fn leads_with(
    client: &Object,
    table: &TableConfig,
    nodes: &[Node],
    column: &str,
) -> Result<bool, CheckError> {
    let indexes: Vec<String> = nodes.iter().filter_map(|n| n.index.clone()).collect();
    let leading: Vec<String> = client
        .query_typed(
            "SELECT a.attname::text FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = to_regclass($1::text) AND c.relname = ANY($2)",
            &[
                (&quote_table(&table.name), Type::TEXT),
                (&indexes, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(refused)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    Ok(!leading.is_empty() && leading.iter().all(|c| c == column))
}

/// One node of a plan, as far as the check reads it.
struct Node {
    kind: String,
    index: Option<String>,
    condition: Option<String>,
}

/// The nodes of an `EXPLAIN (FORMAT JSON)` plan.
fn walk(plan: &serde_json::Value, nodes: &mut Vec<Node>) {
    match plan {
        serde_json::Value::Object(node) => {
            if let Some(kind) = node.get("Node Type").and_then(|v| v.as_str()) {
                let text = |key: &str| node.get(key).and_then(|v| v.as_str()).map(str::to_owned);
                nodes.push(Node {
                    kind: kind.to_owned(),
                    index: text("Index Name"),
                    condition: text("Index Cond"),
                });
            }
            node.values().for_each(|v| walk(v, nodes));
        }
        serde_json::Value::Array(list) => list.iter().for_each(|v| walk(v, nodes)),
        _ => {}
    }
}

/// Whether `condition` (an `Index Cond` as EXPLAIN writes it) names column `column`, bare or
/// quoted, as a whole name.
fn names(condition: &str, column: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = condition.as_bytes();
    [column.to_owned(), sql::quote_ident(column)]
        .iter()
        .any(|name| {
            condition.match_indices(name.as_str()).any(|(at, _)| {
                let before = at.checked_sub(1).map(|i| bytes[i]);
                let after = bytes.get(at + name.len()).copied();
                !before.is_some_and(word) && !after.is_some_and(word)
            })
        })
}

#[cfg(test)]
mod tests;
