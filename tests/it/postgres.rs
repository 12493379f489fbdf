//! The PostgreSQL query service against a real PostgreSQL the test starts itself: keyset walks
//! equal `SELECT … ORDER BY key` (compound, descending and mixed keys with ties), filters and
//! NULLs, every mapped type, injection attempts, streamed CSV/NDJSON exports that resume with
//! `after`, start-up checks that refuse an unfit table, a database that goes down and comes
//! back, timeouts, and a client abort that cancels the running statement.

use std::time::{Duration, Instant};

use crate::support::postgres::{Postgres, csv_records};
use crate::support::{Got, Proxy};

const CURSORS: &str =
    "cursors: {keys: [{id: 1, secret: test-secret-test-secret-test-secret-0123}]}";

/// A table of `rows` rows with ties in `created_at` (three rows a second) and every mapped type.
async fn events(pg: &Postgres, rows: u32) -> String {
    let t = pg.name("events");
    pg.execute(&format!(
        "CREATE TABLE {t} (
           id bigint PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL,
           amount numeric(12,2), big bigint, flag boolean, tags text[], payload jsonb,
           day date, uid uuid, note text);
         INSERT INTO {t}
         SELECT g, (ARRAY['active','archived','failed'])[1 + g % 3],
                timestamptz '2026-01-01 00:00:00.123456+00' + (g / 3) * interval '1 second',
                CASE WHEN g % 5 = 0 THEN NULL ELSE g * 1.25 END,
                9007199254740993 + g, g % 2 = 0, ARRAY['a', 'b' || g],
                jsonb_build_object('k', g, 'deep', jsonb_build_array(1, 'x')),
                date '2026-01-02' + g, md5(g::text)::uuid,
                CASE WHEN g % 7 = 0 THEN 'has, comma and \"quote\"' || chr(10) || 'and a newline' ELSE 'note ' || g END
         FROM generate_series(1, {rows}) g;
         CREATE INDEX ON {t} (created_at, id);
         CREATE INDEX ON {t} (created_at DESC, id);"
    ))
    .await;
    t
}

/// pagegate serving `table` at /db with `settings` under `table:`.
async fn serve(pg: &Postgres, table: &str, settings: &str, top: &str) -> Proxy {
    let yaml = format!(
        "{top}
{CURSORS}
postgres: {{main: {{url: '{}', statement_timeout: 5s}}}}
routes:
  - {{name: db, path: /db, methods: [GET], table: {{database: main, name: {table}, {settings}}}}}
",
        pg.url
    );
    Proxy::start_url(&yaml, "http://127.0.0.1:9").await
}

const COLUMNS: &str =
    "columns: [id, status, created_at, amount, big, flag, tags, payload, day, uid, note]";

/// Follows `next_cursor` from `first`, collecting every row's `id`.
async fn walk(proxy: &Proxy, first: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut url = proxy.url(first);
    let mut pages = 0;
    loop {
        let got = crate::support::get(&url).await;
        assert_eq!(got.status, 200, "{}", got.text());
        let page = got.json();
        for row in page["data"].as_array().expect("data") {
            ids.push(row["id"].as_i64().expect("id"));
        }
        pages += 1;
        assert!(pages < 1000, "no end");
        match page["next_cursor"].as_str() {
            None => {
                assert!(
                    got.header("link").is_none(),
                    "the last page has no next link"
                );
                return ids;
            }
            Some(_) => {
                let link = got.header("link").expect("a next link");
                let next = link.trim_start_matches('<').split('>').next().expect("url");
                url = proxy.url(next);
            }
        }
    }
}

async fn ids(pg: &Postgres, sql: &str) -> Vec<i64> {
    pg.client()
        .await
        .query(sql, &[])
        .await
        .expect(sql)
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn walks_equal_the_sql_order_for_compound_descending_and_mixed_keys() {
    let pg = Postgres::start();
    let t = events(&pg, 2500).await;
    for (key, order) in [
        ("[created_at, id]", "created_at, id"),
        ("[-created_at, -id]", "created_at DESC, id DESC"),
        ("[-created_at, id]", "created_at DESC, id"),
    ] {
        let proxy = serve(
            &pg,
            &t,
            &format!("{COLUMNS}, key: {key}, filters: {{status: [eq]}}"),
            "",
        )
        .await;
        let walked = walk(&proxy, "/db?limit=333&fields=id").await;
        assert!(
            walked == ids(&pg, &format!("SELECT id FROM {t} ORDER BY {order}")).await,
            "key {key}: {}",
            summary(&walked)
        );
        // With a filter: the cursor carries it, the walk stays inside it.
        let walked = walk(&proxy, "/db?status=eq.failed&limit=100&fields=id").await;
        assert_eq!(
            walked,
            ids(
                &pg,
                &format!("SELECT id FROM {t} WHERE status = 'failed' ORDER BY {order}")
            )
            .await,
            "key {key}, filtered"
        );
        proxy.stop().await;
    }
}

#[tokio::test]
async fn every_operator_filters_and_nulls_are_found() {
    let pg = Postgres::start();
    let t = events(&pg, 300).await;
    let filters = "filters: {id: [eq, neq, lt, lte, gt, gte, in], amount: [is, gt], big: [gt], status: [in], created_at: [gte, lt]}";
    let proxy = serve(
        &pg,
        &t,
        &format!("{COLUMNS}, key: [id], {filters}, max_limit: 1000"),
        "",
    )
    .await;
    for (query, sql) in [
        ("id=eq.7", "id = 7"),
        ("id=neq.7", "id <> 7"),
        ("id=lt.7", "id < 7"),
        ("id=lte.7", "id <= 7"),
        ("id=gt.290", "id > 290"),
        ("id=gte.290", "id >= 290"),
        ("id=in.3,5,8", "id IN (3, 5, 8)"),
        ("amount=is.null", "amount IS NULL"),
        (
            "amount=is.not_null&amount=gt.300",
            "amount IS NOT NULL AND amount > 300",
        ),
        ("big=gt.9007199254741290", "big > 9007199254741290"),
        (
            "status=in.failed,archived",
            "status IN ('failed', 'archived')",
        ),
        (
            "created_at=gte.2026-01-01T00:00:10Z&created_at=lt.2026-01-01T00:00:20Z",
            "created_at >= '2026-01-01T00:00:10Z' AND created_at < '2026-01-01T00:00:20Z'",
        ),
    ] {
        let walked = walk(&proxy, &format!("/db?{query}&fields=id&limit=1000")).await;
        assert_eq!(
            walked,
            ids(&pg, &format!("SELECT id FROM {t} WHERE {sql} ORDER BY id")).await,
            "{query}"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn types_map_to_json_faithfully() {
    let pg = Postgres::start();
    let t = events(&pg, 10).await;
    let proxy = serve(
        &pg,
        &t,
        &format!("{COLUMNS}, key: [id], filters: {{id: [eq]}}"),
        "",
    )
    .await;
    let row = crate::support::get(&proxy.url("/db?id=eq.4")).await.json()["data"][0].clone();
    let text = row.to_string();
    assert!(
        text.contains("\"big\":9007199254740997"),
        "int8 beyond 2^53, exact: {text}"
    );
    assert_eq!(row["amount"], "5.00", "numeric as a string");
    assert_eq!(
        row["created_at"], "2026-01-01T00:00:01.123456+00:00",
        "RFC 3339 to the microsecond"
    );
    assert_eq!(row["flag"], true);
    assert_eq!(row["tags"], serde_json::json!(["a", "b4"]));
    assert_eq!(
        row["payload"],
        serde_json::json!({"k": 4, "deep": [1, "x"]})
    );
    assert_eq!(row["day"], "2026-01-06");
    assert_eq!(row["uid"].as_str().map(str::len), Some(36));
    let null = crate::support::get(&proxy.url("/db?id=eq.5")).await.json()["data"][0].clone();
    assert_eq!(null["amount"], serde_json::Value::Null);
    proxy.stop().await;
}

fn assert_problem(got: &Got, status: u16, contains: &str) {
    let problem = got.problem(status);
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(contains),
        "{detail:?} should mention {contains:?}"
    );
}

#[tokio::test]
async fn injection_attempts_change_nothing_and_get_400() {
    let pg = Postgres::start();
    let t = events(&pg, 50).await;
    let proxy = serve(
        &pg,
        &t,
        &format!("{COLUMNS}, key: [id], filters: {{id: [eq], status: [eq]}}"),
        "",
    )
    .await;
    let get = |q: &str| {
        let url = proxy.url(&format!("/db?{q}"));
        async move { crate::support::get(&url).await }
    };
    assert_problem(&get("fields=id;DROP%20TABLE%20x").await, 400, "not a field");
    assert_problem(&get("fields=id,%22status%22").await, 400, "not a field");
    // The value at fault is named, with PostgreSQL's reason and no SQL.
    let refused = "the filter `id=eq.…` was refused by the database: invalid input syntax";
    assert_problem(&get("id=eq.1%20OR%201=1").await, 400, refused);
    assert_problem(&get("id=eq.1);DROP%20TABLE%20x;--").await, 400, refused);
    assert_problem(&get("id=like.1").await, 400, "operator");
    assert_problem(&get("status=gt.a").await, 400, "operator");
    assert_problem(&get("id%3Deq.1=eq.1").await, 400, "not a parameter");
    assert_problem(&get("limit=10;select").await, 400, "limit");
    assert_problem(&get("limit=100000").await, 400, "limit");
    assert_problem(&get("cursor=AAAA").await, 400, "cursor");
    // A quote in a text value is just text: no row has it.
    let got = get("status=eq.a%27%20OR%20%271%27=%271").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["data"], serde_json::json!([]));
    // A cursor minted for one filter does not serve another.
    let first = get("status=eq.active&limit=2").await.json();
    let cursor = first["next_cursor"].as_str().expect("cursor").to_owned();
    assert_problem(
        &get(&format!("status=eq.failed&limit=2&cursor={cursor}")).await,
        400,
        "different query parameters",
    );
    // An export refuses a malformed value before its head: 400, not a cut stream.
    let export = crate::support::get(&proxy.url("/db/export?id=eq.abc")).await;
    assert_problem(&export, 400, refused);
    proxy.stop().await;
}

#[tokio::test]
async fn the_refused_value_among_many_is_named() {
    // pagegate finds which value PostgreSQL refused by halving runs of them: wherever the
    // bad value stands among 100 `in` items and other filters, the 400 names its filter.
    let pg = Postgres::start();
    let t = events(&pg, 20).await;
    let filters = "filters: {id: [in], amount: [gte], day: [lt], uid: [eq]}";
    let proxy = serve(&pg, &t, &format!("{COLUMNS}, key: [id], {filters}"), "").await;
    let items = |bad: Option<usize>| {
        let items: Vec<String> = (0..100)
            .map(|i| {
                if Some(i) == bad {
                    "x".to_owned()
                } else {
                    i.to_string()
                }
            })
            .collect();
        format!("id=in.{}", items.join(","))
    };
    let good = "amount=gte.1&day=lt.2027-01-01&uid=eq.00000000-0000-0000-0000-000000000000";
    let cases = [
        (format!("{}&{good}", items(Some(0))), "id=in"),
        (format!("{}&{good}", items(Some(57))), "id=in"),
        (format!("{}&{good}", items(Some(99))), "id=in"),
        (
            format!("{}&amount=gte.1&day=lt.2027-13-01", items(None)),
            "day=lt",
        ),
        (
            format!("{}&{good}&amount=gte.abc", items(None)).replacen("amount=gte.1&", "", 1),
            "amount=gte",
        ),
        (format!("uid=eq.nope&{}", items(Some(3))), "uid=eq"),
    ];
    for (query, filter) in cases {
        let got = crate::support::get(&proxy.url(&format!("/db?{query}"))).await;
        assert_problem(&got, 400, &format!("the filter `{filter}.…` was refused"));
    }
    let got = crate::support::get(&proxy.url(&format!("/db?{}&{good}", items(None)))).await;
    assert_eq!(got.status, 200, "{}", got.text());
    // 2,000 values, past the 1,664 a PostgreSQL select list holds: the bad last one is still
    // named with the database's own reason, not the probe's list limit.
    let many = vec![items(None); 19].join("&");
    let got = crate::support::get(&proxy.url(&format!("/db?{many}&{}", items(Some(99))))).await;
    assert_problem(&got, 400, "the filter `id=in.…` was refused");
    assert_problem(&got, 400, "invalid input syntax for type bigint");
    proxy.stop().await;
}

#[tokio::test]
async fn exports_stream_every_row_in_chunks_and_resume_after_a_key() {
    let pg = Postgres::start();
    let t = events(&pg, 1234).await;
    let settings = format!(
        "{COLUMNS}, key: [created_at, id], filters: {{status: [eq]}}, export: {{chunk_rows: 100}}"
    );
    let proxy = serve(&pg, &t, &settings, "").await;
    let got = crate::support::get(&proxy.url("/db/export?fields=id,note")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = got.text();
    let mut records = csv_records(&text);
    assert_eq!(
        records.remove(0),
        ["id", "note", "created_at"],
        "key columns always exported"
    );
    let exported: Vec<i64> = records.iter().map(|r| r[0].parse().expect("id")).collect();
    assert_eq!(
        exported,
        ids(&pg, &format!("SELECT id FROM {t} ORDER BY created_at, id")).await
    );
    let quoted = records.iter().find(|r| r[0] == "7").expect("row 7");
    assert_eq!(quoted[1], "has, comma and \"quote\"\nand a newline");
    // Resume after row 500's key: the rest, nothing twice.
    let row = records.iter().position(|r| r[0] == "500").expect("row 500");
    let after = format!("{},{}", records[row][2], records[row][0]);
    let rest = crate::support::get(&proxy.url(&format!(
        "/db/export?fields=id&after={}",
        after.replace('+', "%2B")
    )))
    .await
    .text();
    let rest: Vec<i64> = csv_records(&rest)
        .iter()
        .skip(1)
        .map(|r| r[0].parse().expect("id"))
        .collect();
    assert_eq!(rest, exported[row + 1..]);
    // NDJSON: one object a line, the page's mapping.
    let lines = crate::support::get(&proxy.url("/db/export?format=ndjson&status=eq.failed"))
        .await
        .text();
    let objects: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let failed = ids(
        &pg,
        &format!("SELECT count(*)::int8 FROM {t} WHERE status = 'failed'"),
    )
    .await[0];
    assert_eq!(objects.len() as i64, failed);
    assert!(
        objects
            .iter()
            .all(|o| o["status"] == "failed" && o["big"].is_u64())
    );
    proxy.stop().await;
}

async fn start_error(pg: &Postgres, table: &str, settings: &str) -> String {
    let yaml = format!(
        "listen: 127.0.0.1:0\n{CURSORS}\npostgres: {{main: {{url: '{}'}}}}\nroutes:\n  - {{name: db, path: /db, table: {{database: main, name: {table}, {settings}}}}}\n",
        pg.url
    );
    let config = pagegate::Config::parse("t.yaml", &yaml).expect("valid config");
    match pagegate::Server::bind(config).await {
        Ok(_) => panic!("{table} should be refused"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn an_unfit_table_is_refused_at_start_with_the_fix() {
    let pg = Postgres::start();
    let (nullable, loose, unindexed) =
        (pg.name("nullable"), pg.name("loose"), pg.name("unindexed"));
    pg.execute(&format!(
        "CREATE TABLE {nullable} (id bigint UNIQUE, at timestamptz);
         CREATE TABLE {loose} (id bigint NOT NULL, at timestamptz NOT NULL);
         CREATE TABLE {unindexed} (id bigint PRIMARY KEY, at timestamptz NOT NULL);"
    ))
    .await;
    let error = start_error(&pg, &nullable, "columns: [id, at], key: [id]").await;
    assert!(
        error.contains("may be NULL") && error.contains("SET NOT NULL"),
        "{error}"
    );
    let error = start_error(&pg, &loose, "columns: [id, at], key: [id]").await;
    assert!(error.contains("not unique"), "{error}");
    let error = start_error(&pg, &unindexed, "columns: [id, at], key: [at, id]").await;
    assert!(
        error.contains(&format!(
            "CREATE INDEX ON \"{unindexed}\" (\"at\", \"id\");"
        )),
        "{error}"
    );
    let error = start_error(&pg, &pg.name("missing"), "columns: [id], key: [id]").await;
    assert!(error.contains("does not exist"), "{error}");
}

#[tokio::test]
async fn a_key_unique_only_in_another_sense_is_refused() {
    let pg = Postgres::start();
    let (parent, folded, parted) = (pg.name("parent"), pg.name("folded"), pg.name("parted"));
    pg.execute(&format!(
        "CREATE TABLE {parent} (id bigint PRIMARY KEY);
         CREATE TABLE {parent}_child () INHERITS ({parent});
         INSERT INTO {parent} VALUES (1); INSERT INTO {parent}_child VALUES (1);
         CREATE COLLATION {folded}_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
         CREATE TABLE {folded} (name text COLLATE {folded}_ci NOT NULL);
         CREATE UNIQUE INDEX ON {folded} (name COLLATE \"C\");
         INSERT INTO {folded} VALUES ('a'), ('A');
         CREATE TABLE {parted} (id bigint PRIMARY KEY, n int) PARTITION BY RANGE (id);
         CREATE TABLE {parted}_low PARTITION OF {parted} FOR VALUES FROM (0) TO (100);"
    ))
    .await;
    // Its primary key covers the parent's rows, not its child's: id 1 twice.
    let error = start_error(&pg, &parent, "columns: [id], key: [id]").await;
    assert!(error.contains("INHERITS"), "{error}");
    // Unique under "C", not under the column's case-insensitive collation.
    let error = start_error(&pg, &folded, "columns: [name], key: [name]").await;
    assert!(error.contains("not unique"), "{error}");
    // A partitioned table's primary key spans its partitions.
    let yaml = format!(
        "{CURSORS}\npostgres: {{main: {{url: '{}'}}}}\nroutes:\n  - {{name: db, path: /db, table: {{database: main, name: {parted}, columns: [id, n], key: [id]}}}}\n",
        pg.url
    );
    let proxy = Proxy::start_url(&yaml, "http://127.0.0.1:9").await;
    assert_eq!(crate::support::get(&proxy.url("/db")).await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn a_database_that_goes_down_answers_503_and_is_served_again_when_back() {
    // Its own cluster even with DATABASE_URL: this test stops and restarts it.
    let pg = Postgres::start_owned();
    let t = events(&pg, 20).await;
    let proxy = serve(&pg, &t, &format!("{COLUMNS}, key: [id]"), "").await;
    assert_eq!(crate::support::get(&proxy.url("/db")).await.status, 200);
    pg.stop();
    let got = crate::support::get(&proxy.url("/db")).await;
    let problem = got.problem(503);
    assert_eq!(problem["type"], "urn:pagegate:problem:database-unavailable");
    pg.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = crate::support::get(&proxy.url("/db")).await;
        if got.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served again: {} {}",
            got.status,
            got.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_slow_statement_gets_504_and_an_aborted_export_cancels_its_query() {
    let pg = Postgres::start();
    let t = events(&pg, 3000).await;
    // A view whose every row takes a millisecond: a 1,000-row chunk takes a second.
    let slow = pg.name("slow");
    pg.execute(&format!(
        "CREATE VIEW {slow} AS SELECT id, pg_sleep(0.001)::text AS nap FROM {t}"
    ))
    .await;
    let yaml = format!(
        "{CURSORS}
postgres: {{main: {{url: '{}', statement_timeout: 300ms, application_name: pagegate-abort}}}}
routes:
  - {{name: db, path: /db, table: {{database: main, name: {slow}, columns: [id, nap], key: [id], max_limit: 5000, export: {{chunk_rows: 3000}}}}}}
",
        pg.url
    );
    let proxy = Proxy::start_url(&yaml, "http://127.0.0.1:9").await;
    let got = crate::support::get(&proxy.url("/db?limit=2000")).await;
    assert_eq!(
        got.problem(504)["type"],
        "urn:pagegate:problem:database-timeout"
    );
    // A long chunk in flight; the client leaves after 150 ms.
    let yaml = yaml.replace("statement_timeout: 300ms", "statement_timeout: 60s");
    proxy.stop().await;
    let proxy = Proxy::start_url(&yaml, "http://127.0.0.1:9").await;
    let active = || async {
        let sql = "SELECT count(*)::int8 FROM pg_stat_activity WHERE application_name = 'pagegate-abort' AND state = 'active'";
        ids(&pg, sql).await[0]
    };
    let url = proxy.url("/db/export");
    let export = tokio::spawn(async move { crate::support::get(&url).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(active().await, 1, "the chunk's statement runs");
    export.abort();
    let _ = export.await;
    let left = Instant::now();
    while active().await != 0 {
        assert!(
            left.elapsed() < Duration::from_secs(1),
            "the statement still runs after the client left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The pool is whole: pages are served.
    assert_eq!(
        crate::support::get(&proxy.url("/db?limit=1")).await.status,
        200
    );
    proxy.stop().await;
}

/// The first ids and the length, for failure messages.
fn summary(ids: &[i64]) -> String {
    format!(
        "{} ids, starting {:?}",
        ids.len(),
        &ids[..ids.len().min(20)]
    )
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one scoped table, walked by each tenant page by page and exported"
)]
async fn scoped_rows_stay_with_their_tenant_with_or_without_a_cursor() {
    let pg = Postgres::start();
    let (t, unindexed) = (pg.name("scoped"), pg.name("scoped_unindexed"));
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, tenant_id int NOT NULL, v text);
         INSERT INTO {t} SELECT g, g % 3, 'v' || g FROM generate_series(1, 600) g;
         CREATE INDEX ON {t} (tenant_id, id);
         CREATE TABLE {unindexed} (id bigint PRIMARY KEY, tenant_id int NOT NULL);"
    ))
    .await;
    let scope = "scope: {column: tenant_id, header: X-Tenant}";
    let proxy = serve(
        &pg,
        &t,
        &format!("columns: [id, v], key: [id], {scope}"),
        "",
    )
    .await;
    let as_tenant = |tenant: &'static str, path: String| {
        let url = proxy.url(&path);
        async move {
            let request = http::Request::get(url)
                .header("x-tenant", tenant)
                .body(crate::support::full(bytes::Bytes::new()))
                .expect("request");
            crate::support::send(request).await
        }
    };
    // No header, or two: refused.
    assert_eq!(
        crate::support::get(&proxy.url("/db")).await.problem(403)["type"],
        "urn:pagegate:problem:scope-required"
    );
    // Tenant 1 walks its own rows only.
    let mut walked = Vec::new();
    let mut path = "/db?limit=50".to_owned();
    loop {
        let page = as_tenant("1", path.clone()).await.json();
        walked.extend(
            page["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|r| r["id"].as_i64().expect("id")),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/db?limit=50&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        walked,
        ids(
            &pg,
            &format!("SELECT id FROM {t} WHERE tenant_id = 1 ORDER BY id")
        )
        .await
    );
    // Tenant 1's cursor does not page tenant 2's rows.
    let cursor = as_tenant("1", "/db?limit=50".to_owned()).await.json()["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    as_tenant("2", format!("/db?limit=50&cursor={cursor}"))
        .await
        .problem(400);
    // Exports are scoped too.
    let export = as_tenant("2", "/db/export?fields=id".to_owned())
        .await
        .text();
    let exported: Vec<i64> = export
        .lines()
        .skip(1)
        .map(|l| l.parse().expect("id"))
        .collect();
    assert_eq!(
        exported,
        ids(
            &pg,
            &format!("SELECT id FROM {t} WHERE tenant_id = 2 ORDER BY id")
        )
        .await
    );
    proxy.stop().await;
    // Without an index that starts with the scope column, the start is refused with the fix.
    let error = start_error(
        &pg,
        &unindexed,
        &format!("columns: [id], key: [id], {scope}"),
    )
    .await;
    assert!(
        error.contains(&format!(
            "CREATE INDEX ON \"{unindexed}\" (\"tenant_id\", \"id\");"
        )),
        "{error}"
    );
}

#[tokio::test]
async fn values_are_compared_whole_not_cut_to_the_column_size() {
    let pg = Postgres::start();
    let t = pg.name("sized");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, tenant varchar(8) NOT NULL, amount numeric(10,2) NOT NULL);
         INSERT INTO {t} VALUES (1, 'acmecorp', 1.01), (2, 'other', 2.00);
         CREATE INDEX ON {t} (tenant, id);"
    ))
    .await;
    let settings = "columns: [id, amount], key: [id], filters: {amount: [eq, gt]}, scope: {column: tenant, header: X-Tenant}";
    let proxy = serve(&pg, &t, settings, "").await;
    let as_tenant = |tenant: &'static str, query: &str| {
        let url = proxy.url(&format!("/db?fields=id{query}"));
        async move {
            let request = http::Request::get(url)
                .header("x-tenant", tenant)
                .body(crate::support::full(bytes::Bytes::new()))
                .expect("request");
            crate::support::send(request).await.json()["data"].clone()
        }
    };
    // A longer tenant is another tenant, not `acmecorp` cut to eight characters.
    assert_eq!(
        as_tenant("acmecorp", "").await,
        serde_json::json!([{"id": 1}])
    );
    assert_eq!(as_tenant("acmecorp-evil", "").await, serde_json::json!([]));
    // 1.005 is not rounded to the column's scale: 1.01 is greater, and not equal.
    assert_eq!(
        as_tenant("acmecorp", "&amount=gt.1.005").await,
        serde_json::json!([{"id": 1}])
    );
    assert_eq!(
        as_tenant("acmecorp", "&amount=eq.1.005").await,
        serde_json::json!([])
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_scope_needs_an_index_that_starts_with_it() {
    let pg = Postgres::start();
    let t = pg.name("scope_second");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, tenant_id int NOT NULL);
         CREATE INDEX ON {t} (id, tenant_id);"
    ))
    .await;
    let error = start_error(
        &pg,
        &t,
        "columns: [id], key: [id], scope: {column: tenant_id, header: X-Tenant}",
    )
    .await;
    assert!(
        error.contains(&format!("CREATE INDEX ON \"{t}\" (\"tenant_id\", \"id\");")),
        "{error}"
    );
}

#[tokio::test]
async fn a_client_that_leaves_mid_export_cancels_the_chunk_fetched_ahead() {
    let pg = Postgres::start();
    let t = events(&pg, 4000).await;
    let slow = pg.name("slow_ahead");
    pg.execute(&format!(
        "CREATE VIEW {slow} AS SELECT id, pg_sleep(0.001)::text AS nap FROM {t}"
    ))
    .await;
    let yaml = format!(
        "{CURSORS}
postgres: {{main: {{url: '{}', application_name: pagegate-ahead, statement_timeout: 60s}}}}
routes:
  - {{name: db, path: /db, table: {{database: main, name: {slow}, columns: [id, nap], key: [id], export: {{chunk_rows: 1000, parallel: 1}}}}}}
",
        pg.url
    );
    let proxy = Proxy::start_url(&yaml, "http://127.0.0.1:9").await;
    // The head comes with the first chunk (about a second, far more on a loaded machine: hence
    // the long statement_timeout); the second is then fetched ahead,
    // in a task of its own, while the client holds the body without reading it.
    let response = crate::support::get_head(&proxy.url("/db/export")).await;
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let active = || async {
        let sql = "SELECT count(*)::int8 FROM pg_stat_activity WHERE application_name = 'pagegate-ahead' AND state = 'active'";
        ids(&pg, sql).await[0]
    };
    assert_eq!(active().await, 1, "the chunk ahead is being fetched");
    drop(response);
    let left = Instant::now();
    while active().await != 0 {
        assert!(
            left.elapsed() < Duration::from_secs(1),
            "the chunk ahead still runs after the client left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn pages_and_exports_are_compressed_when_the_client_asks() {
    use std::io::Read;
    let pg = Postgres::start();
    let t = events(&pg, 3000).await;
    let proxy = serve(
        &pg,
        &t,
        &format!("{COLUMNS}, key: [id], export: {{chunk_rows: 500}}"),
        "",
    )
    .await;
    let fetch = |path: &str, encoding: &'static str| {
        let url = proxy.url(path);
        async move {
            let request = http::Request::get(url)
                .header("accept-encoding", encoding)
                .body(crate::support::full(bytes::Bytes::new()))
                .expect("request");
            crate::support::send(request).await
        }
    };
    for path in ["/db/export?format=csv", "/db?limit=1000"] {
        let plain = fetch(path, "identity").await;
        assert_eq!(plain.header("content-encoding"), None);
        let gzip = fetch(path, "gzip").await;
        assert_eq!(gzip.header("content-encoding"), Some("gzip"), "{path}");
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gzip.body[..])
            .read_to_end(&mut unzipped)
            .expect("gzip");
        let zstd = fetch(path, "zstd").await;
        assert_eq!(zstd.header("content-encoding"), Some("zstd"), "{path}");
        let unzstd = zstd::decode_all(&zstd.body[..]).expect("zstd");
        // Pages carry a fresh cursor signature per answer only when a next page exists; the
        // rows are what must match.
        let rows = |bytes: &[u8]| String::from_utf8_lossy(bytes).lines().count();
        assert_eq!(rows(&unzipped), rows(&plain.body), "{path}");
        assert_eq!(rows(&unzstd), rows(&plain.body), "{path}");
        assert!(gzip.body.len() < plain.body.len() / 2, "{path}: compressed");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn check_runs_the_table_checks_when_the_database_answers() {
    let pg = Postgres::start();
    let (fit, unfit) = (pg.name("check_fit"), pg.name("check_unfit"));
    pg.execute(&format!(
        "CREATE TABLE {fit} (id bigint PRIMARY KEY);
         CREATE TABLE {unfit} (id bigint PRIMARY KEY, at timestamptz NOT NULL);"
    ))
    .await;
    let check = |table: &str, key: &str| {
        let yaml = format!(
            "{CURSORS}\npostgres: {{main: {{url: '{}'}}}}\nroutes:\n  - {{name: db, path: /db, table: {{database: main, name: {table}, columns: [id{}], key: {key}}}}}\n",
            pg.url,
            if key.contains("at") { ", at" } else { "" }
        );
        let path = std::env::temp_dir().join(format!("{}-{table}.yaml", pg.prefix));
        std::fs::write(&path, yaml).expect("config");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pagegate"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("pagegate check");
        let _ = std::fs::remove_file(&path);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = check(&fit, "[id]");
    assert!(
        ok && out.contains(&format!("route db: table {fit} ok")),
        "{out}"
    );
    let (ok, out) = check(&unfit, "[at, id]");
    assert!(!ok && out.contains("CREATE INDEX ON"), "{out}");
}

#[tokio::test]
async fn an_export_whose_rows_fill_whole_chunks_ends_cleanly() {
    let pg = Postgres::start();
    let t = events(&pg, 1000).await;
    let proxy = serve(
        &pg,
        &t,
        &format!("{COLUMNS}, key: [id], export: {{chunk_rows: 100}}"),
        "",
    )
    .await;
    // Ten full chunks, then an empty eleventh: every row once, the header once.
    let text = crate::support::get(&proxy.url("/db/export?fields=id"))
        .await
        .text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id");
    let exported: Vec<i64> = lines[1..].iter().map(|l| l.parse().expect("id")).collect();
    assert_eq!(exported, (1..=1000).collect::<Vec<i64>>());
    // Resuming after the last row gives the header and nothing else.
    let rest = crate::support::get(&proxy.url("/db/export?fields=id&after=1000"))
        .await
        .text();
    assert_eq!(rest, "id\n");
    proxy.stop().await;
}

#[tokio::test]
async fn a_page_of_wide_rows_ends_at_page_bytes_and_the_next_goes_on_from_there() {
    let pg = Postgres::start();
    // 20 KiB rows against 64 KiB pages: a page ends after its fourth row.
    let t = pg.wide_table("wide_pages", 30, "repeat('w', 20480)").await;
    let settings = "columns: [id, blob], key: [id], max_limit: 100, page_bytes: 64KiB";
    let proxy = serve(&pg, &t, settings, "").await;
    let first = crate::support::get(&proxy.url("/db?limit=100")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let page = first.json();
    assert_eq!(page["data"].as_array().expect("data").len(), 4);
    assert!(page["next_cursor"].is_string(), "a next page");
    assert!(first.body.len() < 100 << 10, "{} bytes", first.body.len());
    // Page after page, every row once and in order.
    assert_eq!(
        walk(&proxy, "/db?limit=100").await,
        (1..=30).collect::<Vec<_>>()
    );
    // Narrow pages are not cut.
    let narrow = crate::support::get(&proxy.url("/db?limit=100&fields=id"))
        .await
        .json();
    assert_eq!(narrow["data"].as_array().expect("data").len(), 30);
    assert!(narrow["next_cursor"].is_null());
    proxy.stop().await;
}

#[tokio::test]
async fn pages_of_wide_rows_keep_their_connection() {
    let pg = Postgres::start();
    // The probe row (the one past `limit`) is 20 KiB: its statement is read to its end, not
    // cut (a cut closes the connection). The probe's end arriving late, which made the page
    // before this change cut its statement, did not happen on loopback here; the test holds
    // the page to keeping its connection whatever the timing.
    let t = pg.wide_table("wide_probe", 40, "repeat('p', 20480)").await;
    let relay = crate::support::pgwire::Relay::start(&pg.url).await;
    let yaml = format!(
        "{CURSORS}\npostgres: {{main: {{url: '{}', pool_size: 2}}}}\nroutes:\n  - {{name: db, path: /db, table: {{database: main, name: {t}, columns: [id, blob], key: [id]}}}}\n",
        relay.url
    );
    let proxy = Proxy::start_url(&yaml, "http://127.0.0.1:9").await;
    let before = relay.connections();
    assert_eq!(
        walk(&proxy, "/db?limit=3").await,
        (1..=40).collect::<Vec<_>>()
    );
    // Fourteen pages on the connections the start-up check left in the pool, or one more:
    // none closed by a cancel.
    assert!(
        relay.connections() - before <= 1,
        "{} connections",
        relay.connections() - before
    );
    proxy.stop().await;
}
