//! A reload checks table routes against their database as a start does: a route that no
//! longer fits its table is refused, by route and with the fix, and the running config goes on
//! serving (a real PostgreSQL the test starts itself).

use crate::support::Proxy;
use crate::support::postgres::Postgres;

const CURSORS: &str =
    "cursors: {keys: [{id: 1, secret: test-secret-test-secret-test-secret-0123}]}";

fn yaml(pg: &Postgres, table: &str, columns: &str) -> String {
    format!(
        "{CURSORS}\npostgres: {{main: {{url: '{}'}}}}\nroutes:\n  - {{name: db, path: /db, methods: [GET], table: {{database: main, name: {table}, columns: [{columns}], key: [id]}}}}\n",
        pg.url
    )
}

/// A table `base` of three rows (`id`, `at`) in `pg`: its name.
async fn three_rows(pg: &Postgres, base: &str) -> String {
    let table = pg.name(base);
    pg.execute(&format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, at timestamptz NOT NULL);
         INSERT INTO {table} SELECT g, now() FROM generate_series(1, 3) g;"
    ))
    .await;
    table
}

#[tokio::test]
async fn a_reload_with_a_table_route_that_does_not_fit_is_refused() {
    let pg = Postgres::start();
    let table = three_rows(&pg, "reloaded").await;
    let proxy = Proxy::start_url(&yaml(&pg, &table, "id, at"), "http://127.0.0.1:9").await;
    let before = crate::support::get(&proxy.url("/db")).await;
    assert_eq!(before.status, 200, "{}", before.text());
    // A column the table does not have: a start would refuse this file, so does a reload.
    let error = proxy
        .reload(&yaml(&pg, &table, "id, nope"), "http://127.0.0.1:9")
        .await
        .expect_err("refused");
    let error = error.to_string();
    assert!(
        error.contains("nope") && error.contains("route `db`"),
        "{error}"
    );
    let after = crate::support::get(&proxy.url("/db")).await;
    assert_eq!(
        after.status,
        200,
        "the running config serves on: {}",
        after.text()
    );
    assert_eq!(after.text(), before.text());
    // A reload that fits is taken.
    proxy
        .reload(&yaml(&pg, &table, "id"), "http://127.0.0.1:9")
        .await
        .expect("reloaded");
    let narrowed = crate::support::get(&proxy.url("/db")).await;
    assert_eq!(narrowed.status, 200);
    assert!(!narrowed.text().contains("\"at\""), "{}", narrowed.text());
    proxy.stop().await;
}

#[tokio::test]
async fn a_running_route_whose_table_changed_does_not_hold_back_other_changes() {
    let pg = Postgres::start();
    let table = three_rows(&pg, "migrated").await;
    let yaml = yaml(&pg, &table, "id, at");
    let proxy = Proxy::start_url(&yaml, "http://127.0.0.1:9").await;
    assert_eq!(crate::support::get(&proxy.url("/db")).await.status, 200);
    // A migration drops a column the running route reads; then another key changes (as a
    // renewed certificate would), below the route or, moving it in the file, above.
    pg.execute(&format!("ALTER TABLE {table} DROP COLUMN at"))
        .await;
    // Moving the route in the file, before anything noticed: the route it replaces is
    // checked too, and was out of service already.
    proxy
        .reload(
            &format!("max_held_bytes: 24MiB\n{yaml}"),
            "http://127.0.0.1:9",
        )
        .await
        .expect("the route was broken already");
    proxy
        .reload(&yaml, "http://127.0.0.1:9")
        .await
        .expect("back to the file as it was");
    let below = format!("{yaml}max_held_bytes: 32MiB\n");
    proxy
        .reload(&below, "http://127.0.0.1:9")
        .await
        .expect("the other change is taken");
    assert_eq!(proxy.handle.generation().config().max_held_bytes, 32 << 20);
    let got = crate::support::get(&proxy.url("/db")).await;
    assert_eq!(
        got.status,
        503,
        "the route answers as it did: {}",
        got.text()
    );
    let above = format!("max_held_bytes: 16MiB\n{yaml}");
    proxy
        .reload(&above, "http://127.0.0.1:9")
        .await
        .expect("the route was out of service already");
    assert_eq!(proxy.handle.generation().config().max_held_bytes, 16 << 20);
    proxy.stop().await;
}
