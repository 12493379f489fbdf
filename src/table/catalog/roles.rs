//! Whether each role the config gives a column is one its type can serve: a filter operator
//! the type has (`eq` on `json` has none), a key the type orders (a btree index walks it), a
//! scope it compares. PostgreSQL is asked by preparing, never running, the very statement each
//! role makes pagegate send, inside a transaction that is rolled back: its own operator rules
//! answer for every type, built-in or not. A role it refuses is refused at `check` and at
//! start with the line to change, so no client ever gets a 503 for a statement that could never
//! run.

use deadpool_postgres::Object;

use super::{Catalog, CheckError, index::statement_name, refused};
use crate::config::problems::Position;
use crate::table::config::{FilterOp, KeyColumn, TableConfig};
use crate::table::sql::{self, Filter, Shape};

/// One role to ask about: the statement it makes, where the config gives it, and what to say.
struct Probe {
    sql: String,
    column: String,
    at: Option<Position>,
    role: String,
    fix: String,
}

/// The probes of `table`'s roles: each filter operator, the scope, each key column on its own
/// and the whole key.
fn probes(table: &TableConfig, catalog: &Catalog) -> Vec<Probe> {
    let places = &table.places;
    let first_key: Vec<String> = table.key.iter().take(1).map(|k| k.column.clone()).collect();
    let mut probes = Vec::new();
    for (column, ops) in &table.filters {
        for op in ops.iter().filter(|op| **op != FilterOp::Is) {
            let statement = sql::select(
                table,
                catalog,
                &first_key,
                Shape::Json,
                &[Filter::shape(column, *op)],
                None,
                1,
            );
            probes.push(Probe {
                sql: statement.sql,
                column: column.clone(),
                at: places.filters.get(&(column.clone(), *op)).copied(),
                role: format!("`filters` allows `{}` on `{column}`", op.name()),
                fix: format!("remove `{}` from filters.{column}", op.name()),
            });
        }
    }
    if let Some(scope) = &table.scope {
        let statement = sql::select(
            table,
            catalog,
            &first_key,
            Shape::Json,
            &[Filter::shape(&scope.column, FilterOp::Eq)],
            None,
            1,
        );
        probes.push(Probe {
            sql: statement.sql,
            column: scope.column.clone(),
            at: places.scope,
            role: format!("`scope` compares `{}` for equality", scope.column),
            fix: "scope rows by a column of a type with `=` (text, an integer, uuid)".to_owned(),
        });
    }
    probes.extend(key_probes(table, catalog));
    probes
}

/// The probes of the key: each column on its own, and the whole key as one row.
fn key_probes(table: &TableConfig, catalog: &Catalog) -> Vec<Probe> {
    let places = &table.places;
    let mut probes = Vec::new();
    for (i, key) in table.key.iter().enumerate() {
        let mut alone = table.clone();
        alone.key = vec![KeyColumn {
            column: key.column.clone(),
            descending: key.descending,
        }];
        alone.scope = None;
        let after = [String::new()];
        let statement = sql::select(
            &alone,
            catalog,
            std::slice::from_ref(&key.column),
            Shape::Json,
            &[],
            Some(&after),
            1,
        );
        probes.push(Probe {
            sql: statement.sql,
            column: key.column.clone(),
            at: places.key.get(i).copied(),
            role: format!("`key` names `{}`", key.column),
            fix: "key rows by columns of types with a total order a btree index walks (integers, text, timestamps, uuid)".to_owned(),
        });
    }
    if table.key.len() > 1 {
        let statement = super::index::keyset(table, catalog);
        probes.push(Probe {
            sql: statement.sql,
            column: table
                .key
                .iter()
                .map(|k| k.column.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            at: places.key.first().copied(),
            role: "`key` compares its columns as one row".to_owned(),
            fix: "key rows by columns of types with a total order a btree index walks".to_owned(),
        });
    }
    probes
}

/// Refuses a role the column's type cannot serve, naming the line and the fix.
pub(super) async fn check(
    client: &mut Object,
    table: &TableConfig,
    catalog: &Catalog,
) -> Result<(), CheckError> {
    let places = &table.places;
    // `in` lists single values: on an array column each item would be a whole array.
    for (column, ops) in &table.filters {
        let array = catalog.columns.get(column).filter(|c| c.array);
        if let (Some(c), true) = (array, ops.contains(&FilterOp::In)) {
            return Err(CheckError::Invalid(format!(
                "{}`filters` allows `in` on `{column}`, an array ({}): `in` lists single values; remove `in` from filters.{column} (eq compares a whole array)",
                places.at(places.filters.get(&(column.clone(), FilterOp::In)).copied()),
                c.sql_type
            )));
        }
    }
    let transaction = client.transaction().await.map_err(refused)?;
    for probe in probes(table, catalog) {
        let name = statement_name("role_check");
        transaction
            .batch_execute("SAVEPOINT pagegate_role")
            .await
            .map_err(refused)?;
        let prepared = transaction
            .batch_execute(&format!(
                "PREPARE {name} AS {}; DEALLOCATE {name}",
                probe.sql
            ))
            .await;
        match prepared {
            Ok(()) => {}
            Err(error) => {
                let Some(db) = error.as_db_error() else {
                    return Err(refused(error));
                };
                return Err(CheckError::Invalid(format!(
                    "{}{}, but `{}` is {}, which cannot serve that ({}): {}",
                    places.at(probe.at),
                    probe.role,
                    probe.column,
                    catalog.sql_type(&probe.column),
                    db.message(),
                    probe.fix
                )));
            }
        }
        transaction
            .batch_execute("RELEASE SAVEPOINT pagegate_role")
            .await
            .map_err(refused)?;
    }
    transaction.rollback().await.map_err(refused)?;
    Ok(())
}
