//! Exports fetched as parallel key ranges (`export.parallel`), against a real PostgreSQL: the
//! same bytes as one chunk after the other for every key shape, format, path, filter and
//! resume; rows written during the export neither lost nor doubled nor out of order; several
//! statements at once, every one cancelled when the client leaves; and no more than
//! `parallel + 1` chunks fetched ahead of a client that does not read.

use std::time::{Duration, Instant};

use crate::support::postgres::{Postgres, csv_records};
use crate::support::{Proxy, get};

const CURSORS: &str =
    "cursors: {keys: [{id: 1, secret: test-secret-test-secret-test-secret-0123}]}";

/// pagegate over `pg` with `routes` (YAML list items) and an admin listener for metrics.
async fn serve(pg: &Postgres, settings: &str, routes: &str) -> Proxy {
    let yaml = format!(
        "admin: {{listen: 127.0.0.1:0}}\n{CURSORS}\npostgres: {{main: {{url: '{}', {settings}}}}}\nroutes:\n{routes}",
        pg.url
    );
    Proxy::start_url(&yaml, "http://127.0.0.1:9").await
}

/// One count from `sql`.
async fn count(pg: &Postgres, sql: &str) -> i64 {
    pg.client()
        .await
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e}"))
        .get(0)
}

/// Statements running for `application`.
async fn active(pg: &Postgres, application: &str) -> i64 {
    count(
        pg,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application}' AND state = 'active'"
        ),
    )
    .await
}

/// Waits until the statements running for `application` are as `wanted` says, failing with
/// `what` (and the last count) past `limit`.
async fn until_active(
    pg: &Postgres,
    application: &str,
    wanted: impl Fn(i64) -> bool,
    limit: Duration,
    what: &str,
) {
    let started = Instant::now();
    loop {
        let running = active(pg, application).await;
        if wanted(running) {
            return;
        }
        assert!(started.elapsed() < limit, "{what}: {running} running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `pagegate_export_rows_total` of route `db`.
async fn exported_rows(proxy: &Proxy) -> f64 {
    let text = proxy.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix("pagegate_export_rows_total{route=\"db\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no export rows counted:\n{text}"))
}

/// The ids of `t` in the order of `key` (`[a, -b]`).
async fn ordered_ids(pg: &Postgres, t: &str, key: &str) -> Vec<i64> {
    let order = key
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|c| {
            c.strip_prefix('-')
                .map_or(c.to_owned(), |c| format!("{c} DESC"))
        })
        .collect::<Vec<_>>()
        .join(", ");
    pg.client()
        .await
        .query(&format!("SELECT id FROM {t} ORDER BY {order}"), &[])
        .await
        .expect("order")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A table of 1,234 rows with ties in `at` (three rows a second), text that needs quoting,
/// NULLs, and the indexes its keys need.
async fn ranges_table(pg: &Postgres) -> String {
    let t = pg.name("ranges");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, at timestamptz NOT NULL, status text NOT NULL,
           note text, amount numeric);
         INSERT INTO {t}
         SELECT g, timestamptz '2026-01-01 00:00:00.5+00' + (g / 3) * interval '1 second',
                (ARRAY['active','archived','failed'])[1 + g % 3],
                CASE WHEN g % 7 = 0 THEN 'a, \"quoted\"' || chr(10) || 'line' WHEN g % 11 = 0 THEN NULL
                     ELSE 'note ' || g END,
                g * 1.25
         FROM generate_series(1, 1234) g;
         CREATE INDEX ON {t} (at, id);
         CREATE INDEX ON {t} (at DESC, id);
         CREATE INDEX ON {t} (status, at, id);"
    ))
    .await;
    t
}

#[tokio::test]
async fn parallel_ranges_give_the_bytes_of_one_chunk_after_the_other() {
    let pg = Postgres::start();
    let t = ranges_table(&pg).await;
    let keys = [
        ("id", "[id]"),
        ("at", "[at, id]"),
        ("mixed", "[-at, id]"),
        ("desc", "[-at, -id]"),
    ];
    let mut routes = String::new();
    for (name, key) in keys {
        for via in ["copy", "queries"] {
            for parallel in [1, 3] {
                routes.push_str(&format!(
                    "  - {{name: {name}-{via}-{parallel}, path: /{name}/{via}/{parallel}, table: {{database: main, name: {t}, columns: [id, at, status, note, amount], key: {key}, filters: {{status: [eq], id: [lt]}}, export: {{chunk_rows: 100, via: {via}, parallel: {parallel}}}}}}}\n"
                ));
            }
        }
    }
    let proxy = serve(&pg, "pool_size: 12", &routes).await;
    for (name, key) in keys {
        let want = ordered_ids(&pg, &t, key).await;
        for via in ["copy", "queries"] {
            let one = format!("/{name}/{via}/1/export");
            let three = format!("/{name}/{via}/3/export");
            // The key of row 500 in this order, as the CSV export writes it.
            let all = get(&proxy.url(&format!("{one}?fields=id"))).await.text();
            let records = csv_records(&all);
            let ids: Vec<i64> = records[1..]
                .iter()
                .map(|r| r[0].parse().expect("id"))
                .collect();
            assert_eq!(ids, want, "{name} {via}: every row once, in key order");
            let at = ids.iter().position(|id| *id == 500).expect("row 500");
            let after = match name {
                "id" => "500".to_owned(),
                _ => format!("\"{}\",500", records[at + 1][1]),
            };
            let after = after
                .replace('+', "%2B")
                .replace('"', "%22")
                .replace(' ', "%20");
            for query in [
                String::new(),
                "?format=ndjson".to_owned(),
                "?status=eq.failed".to_owned(),
                "?status=eq.failed&format=ndjson".to_owned(),
                "?id=lt.150".to_owned(),
                "?id=lt.0".to_owned(),
                "?fields=note".to_owned(),
                format!("?after={after}"),
                format!("?after={after}&format=ndjson&status=eq.active"),
            ] {
                let what = format!("{name} {via} {query}");
                let serial = get(&proxy.url(&format!("{one}{query}"))).await;
                let parallel = get(&proxy.url(&format!("{three}{query}"))).await;
                assert_eq!(serial.status, 200, "{what}: {}", serial.text());
                assert_eq!(parallel.status, 200, "{what}: {}", parallel.text());
                assert_eq!(parallel.body, serial.body, "{what}: the same bytes");
            }
            let rest = get(&proxy.url(&format!("{three}?fields=id&after={after}"))).await;
            let rest: Vec<i64> = csv_records(&rest.text())[1..]
                .iter()
                .map(|r| r[0].parse().expect("id"))
                .collect();
            assert_eq!(rest, want[at + 1..], "{name} {via}: resumed after row 500");
        }
    }
    proxy.stop().await;
}

#[tokio::test]
async fn rows_written_during_a_parallel_export_are_neither_lost_nor_doubled() {
    let pg = Postgres::start();
    let t = pg.name("moving");
    let slow = pg.name("moving_slow");
    // Even ids; odd ones are written while the export runs. Each row of the view takes
    // half a millisecond to find, so a range's end is found well before its rows are read,
    // and rows written meanwhile land inside ranges whose end is known: those ranges run long.
    // (Checked: with ranges that stop at their end regardless, prior rows go missing here.)
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY);
         INSERT INTO {t} SELECT 2 * g FROM generate_series(1, 1500) g;
         CREATE FUNCTION {slow}_found(bigint) RETURNS boolean LANGUAGE plpgsql VOLATILE
           AS $$ BEGIN PERFORM pg_sleep(0.0005); RETURN true; END $$;
         CREATE VIEW {slow} AS SELECT id, '' AS nap FROM {t} WHERE {slow}_found(id);"
    ))
    .await;
    let routes = format!(
        "  - {{name: db, path: /db, table: {{database: main, name: {slow}, columns: [id, nap], key: [id], export: {{chunk_rows: 100, parallel: 4}}}}}}\n"
    );
    let proxy = serve(&pg, "pool_size: 4, statement_timeout: 60s", &routes).await;
    let url = proxy.url("/db/export?fields=id");
    let export = tokio::spawn(async move { get(&url).await });
    let writer = pg.client().await;
    let mut written = 0;
    let mut odd = 1;
    while !export.is_finished() {
        // Every odd id in turn, spread over the whole key range.
        let id = ((odd * 997) % 3000) | 1;
        odd += 1;
        writer
            .execute(
                &format!("INSERT INTO {t} VALUES ($1) ON CONFLICT DO NOTHING"),
                &[&i64::from(id)],
            )
            .await
            .expect("insert");
        written += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let got = export.await.expect("export");
    assert_eq!(got.status, 200);
    let ids: Vec<i64> = got
        .text()
        .lines()
        .skip(1)
        .map(|l| l.parse().expect("id"))
        .collect();
    assert!(
        written > 50,
        "rows were written during the export: {written}"
    );
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in key order, none twice"
    );
    let lost: Vec<i64> = (1..=1500)
        .map(|g| 2 * g)
        .filter(|id| ids.binary_search(id).is_err())
        .collect();
    assert!(
        lost.is_empty(),
        "rows there before the export, lost: {lost:?}"
    );
    proxy.stop().await;
}

/// A view `{name}_slow` of ids 1 to `rows` whose column `nap` takes a millisecond a row to
/// read, in a function declared immutable so the view stays a plain scan of the table: a
/// range's end is found without calling it, as an index walk skips the columns of a real
/// table.
async fn slow_view(pg: &Postgres, name: &str, rows: u32) -> String {
    let t = pg.name(name);
    let slow = format!("{t}_slow");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY);
         INSERT INTO {t} SELECT g FROM generate_series(1, {rows}) g;
         CREATE FUNCTION {slow}_nap(bigint) RETURNS text LANGUAGE plpgsql IMMUTABLE
           AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN ''; END $$;
         CREATE VIEW {slow} AS SELECT id, {slow}_nap(id) AS nap FROM {t};"
    ))
    .await;
    slow
}

#[tokio::test]
async fn a_parallel_export_runs_statements_at_once_and_a_leaving_client_cancels_them_all() {
    let pg = Postgres::start();
    // A chunk of 3,000 rows takes 3 s: a statement the client's leaving did not cancel would
    // outlive the 1 s allowed below.
    let slow = slow_view(&pg, "wide", 12_000).await;
    let routes = format!(
        "  - {{name: db, path: /db, table: {{database: main, name: {slow}, columns: [id, nap], key: [id], export: {{chunk_rows: 3000, parallel: 3}}}}}}\n"
    );
    let proxy = serve(
        &pg,
        "pool_size: 4, statement_timeout: 60s, application_name: pagegate-wide",
        &routes,
    )
    .await;
    let response = crate::support::get_head(&proxy.url("/db/export")).await;
    assert_eq!(response.status(), 200);
    let (app, seconds) = ("pagegate-wide", Duration::from_secs);
    let what = "statements of several ranges at once";
    until_active(&pg, app, |n| n >= 2, seconds(5), what).await;
    drop(response);
    let what = "a range's statement still runs after the client left";
    until_active(&pg, app, |n| n == 0, seconds(1), what).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_parallel_export_stays_a_few_chunks_ahead_of_a_slow_client() {
    let pg = Postgres::start();
    let t = pg.name("heavy");
    // 2,000 rows of 16 KiB: 32 MiB, far more than the sockets between can hold.
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, pad text NOT NULL);
         ALTER TABLE {t} ALTER pad SET STORAGE EXTERNAL;
         INSERT INTO {t} SELECT g, repeat(md5(g::text), 512) FROM generate_series(1, 2000) g;"
    ))
    .await;
    let routes = format!(
        "  - {{name: db, path: /db, table: {{database: main, name: {t}, columns: [id, pad], key: [id], export: {{chunk_rows: 100, parallel: 4}}}}}}\n"
    );
    let proxy = serve(
        &pg,
        "pool_size: 4, application_name: pagegate-held",
        &routes,
    )
    .await;
    let response = crate::support::get_head(&proxy.url("/db/export")).await;
    assert_eq!(response.status(), 200);
    // A client that reads nothing: the export waits for it.
    // 10 s in all from the head.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let limit = Duration::from_millis(9_700);
    until_active(
        &pg,
        "pagegate-held",
        |n| n == 0,
        limit,
        "the export never waits",
    )
    .await;
    // Socket buffers hold a few MiB (some hundred rows of 16 KiB); pagegate at most
    // parallel + 1 chunks of 100 rows.
    let ahead = exported_rows(&proxy).await;
    assert!(
        ahead < 1200.0,
        "{ahead} rows fetched for a client that reads nothing"
    );
    // Then a slow reader (about 10 MB/s): the export keeps as far ahead of it, no further.
    use http_body_util::BodyExt;
    let mut body = response.into_body();
    let (mut received, mut lines, mut frames, mut most) = (Vec::new(), 0_usize, 0, 0.0_f64);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.expect("frame").into_data() else {
            continue;
        };
        lines += data.iter().filter(|b| **b == b'\n').count();
        received.extend_from_slice(&data);
        frames += 1;
        if frames % 8 == 0 {
            let fetched = exported_rows(&proxy).await;
            most = most.max(fetched - lines.saturating_sub(1) as f64);
        }
        tokio::time::sleep(Duration::from_millis(data.len() as u64 / 10_000)).await;
    }
    assert!(most < 1200.0, "{most} rows fetched ahead of a slow client");
    // Every row, in order.
    let ids: Vec<i64> = String::from_utf8(received)
        .expect("utf-8")
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().expect("id").parse().expect("id"))
        .collect();
    assert_eq!(ids, (1..=2000).collect::<Vec<i64>>());
    proxy.stop().await;
}

#[tokio::test]
async fn a_parallel_export_leaves_a_place_for_the_routes_pages() {
    let pg = Postgres::start();
    let slow = slow_view(&pg, "shared", 9000).await;
    // Three places; an export that may fetch three chunks of 2 s each at once.
    let routes = format!(
        "  - {{name: db, path: /db, table: {{database: main, name: {slow}, columns: [id, nap], key: [id], max_connections: 3, export: {{chunk_rows: 2000, parallel: 3}}}}}}\n"
    );
    let proxy = serve(
        &pg,
        "pool_size: 3, connect_timeout: 1s, statement_timeout: 60s, application_name: pagegate-shared",
        &routes,
    )
    .await;
    let response = crate::support::get_head(&proxy.url("/db/export")).await;
    assert_eq!(response.status(), 200);
    // The export's ranges run; a page still finds a place.
    let what = "the export's ranges run";
    until_active(
        &pg,
        "pagegate-shared",
        |n| n >= 2,
        Duration::from_secs(5),
        what,
    )
    .await;
    let page = get(&proxy.url("/db?limit=1&fields=id")).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        active(&pg, "pagegate-shared").await <= 2,
        "no more than two places taken by the export"
    );
    drop(response);
    proxy.stop().await;
}

#[tokio::test]
async fn two_parallel_exports_leave_a_place_between_them() {
    let pg = Postgres::start();
    let slow = slow_view(&pg, "two", 12_000).await;
    // Five places; two exports that may each fetch three chunks of 2 s at once. Each may take
    // a place for its next fetch in key order (so both together may take two), but extra
    // ranges only while one more stays free: four at most, and a page finds the fifth.
    let routes = format!(
        "  - {{name: db, path: /db, table: {{database: main, name: {slow}, columns: [id, nap], key: [id], max_connections: 5, export: {{chunk_rows: 2000, parallel: 3}}}}}}\n"
    );
    let proxy = serve(
        &pg,
        "pool_size: 5, connect_timeout: 2s, statement_timeout: 60s, application_name: pagegate-two",
        &routes,
    )
    .await;
    let url = proxy.url("/db/export");
    let (a, b) = tokio::join!(
        crate::support::get_head(&url),
        crate::support::get_head(&url)
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let what = "both exports' ranges run";
    until_active(
        &pg,
        "pagegate-two",
        |n| n >= 4,
        Duration::from_secs(8),
        what,
    )
    .await;
    let mut most = 0;
    for _ in 0..40 {
        most = most.max(active(&pg, "pagegate-two").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(most <= 4, "{most} places taken by the exports");
    let page = get(&proxy.url("/db?limit=1&fields=id")).await;
    assert_eq!(page.status, 200, "{}", page.text());
    drop((a, b));
    proxy.stop().await;
}

/// The ids of an export's rows, CSV or NDJSON.
fn exported_ids(format: &str, text: &str) -> Vec<i64> {
    match format {
        "csv" => csv_records(text)[1..]
            .iter()
            .map(|r| r[0].parse().expect("id"))
            .collect(),
        _ => text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("row")["id"]
                    .as_i64()
                    .expect("id")
            })
            .collect(),
    }
}

#[tokio::test]
async fn chunks_of_wide_rows_end_at_chunk_bytes_and_give_the_same_bytes() {
    // 20 KiB rows against 64 KiB chunks: each chunk ends after its fourth row, the rest of its
    // statement cancelled and dropped, and the next starts after it.
    let pg = Postgres::start();
    let t = pg
        .wide_table("wide", 300, "repeat(chr(97 + g % 26), 20480)")
        .await;
    let mut routes = String::new();
    for via in ["copy", "queries"] {
        for (bytes, parallel) in [("16MiB", 1), ("64KiB", 1), ("64KiB", 3)] {
            routes.push_str(&format!(
                "  - {{name: {via}-{bytes}-{parallel}, path: /{via}/{bytes}/{parallel}, table: {{database: main, name: {t}, columns: [id, blob], key: [id], export: {{chunk_rows: 100, chunk_bytes: {bytes}, via: {via}, parallel: {parallel}}}}}}}\n"
            ));
        }
    }
    let proxy = serve(&pg, "pool_size: 12, application_name: wide", &routes).await;
    let want: Vec<i64> = (1..=300).collect();
    for via in ["copy", "queries"] {
        for format in ["csv", "ndjson"] {
            let whole = get(&proxy.url(&format!("/{via}/16MiB/1/export?format={format}"))).await;
            assert_eq!(whole.status, 200, "{}", whole.text());
            for path in ["64KiB/1", "64KiB/3"] {
                let what = format!("{via} {format} {path}");
                let cut = get(&proxy.url(&format!("/{via}/{path}/export?format={format}"))).await;
                assert_eq!(cut.status, 200, "{what}: {}", cut.text());
                assert_eq!(cut.body.len(), whole.body.len(), "{what}");
                assert!(cut.body == whole.body, "{what}: the same bytes");
            }
            let ids = exported_ids(format, &whole.text());
            assert_eq!(ids, want, "{via} {format}: every row once, in order");
        }
        // The pool serves the next request after the connections of cut statements closed.
        let page = get(&proxy.url(&format!("/{via}/64KiB/1?limit=2&fields=id"))).await;
        assert_eq!(page.status, 200, "{}", page.text());
    }
    let text = proxy.metrics_text().await;
    let cut = |route: &str| -> f64 {
        let sample = format!("pagegate_export_chunks_cut_total{{route=\"{route}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&sample)?.parse().ok())
            .unwrap_or_else(|| panic!("no {sample}"))
    };
    for via in ["copy", "queries"] {
        assert_eq!(
            cut(&format!("{via}-16MiB-1")),
            0.0,
            "{via}: 2 MiB chunks fit"
        );
        // The first chunk of each export (CSV, NDJSON) ends at 64 KiB; the next ones ask for
        // as many rows, and ranges started later start at that size.
        assert_eq!(
            cut(&format!("{via}-64KiB-1")),
            2.0,
            "{via}: one cut an export"
        );
        let cuts = cut(&format!("{via}-64KiB-3"));
        assert!(
            (2.0..=6.0).contains(&cuts),
            "{via} parallel: {cuts} cut chunks"
        );
    }
    until_active(
        &pg,
        "wide",
        |n| n == 0,
        Duration::from_secs(5),
        "no statement left running",
    )
    .await;
    proxy.stop().await;
}

/// `pagegate_export_chunks_cut_total` of `route`.
fn cut_chunks(metrics: &str, route: &str) -> f64 {
    let sample = format!("pagegate_export_chunks_cut_total{{route=\"{route}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&sample)?.parse().ok())
        .unwrap_or_else(|| panic!("no {sample}"))
}

#[tokio::test]
async fn after_a_cut_each_range_is_one_chunk_and_a_chunk_ending_the_table_is_not_cut() {
    // 3 KiB rows against 64 KiB chunks: a chunk reaches the bound on its 22nd row. `{t}` has
    // 440 rows (20 chunks); `{t}_end` has 22, so its only chunk reaches the bound on the
    // table's last row.
    let pg = Postgres::start();
    let t = pg.wide_table("cut_ranges", 440, "repeat('x', 3072)").await;
    pg.execute(&format!(
        "CREATE TABLE {t}_end (LIKE {t} INCLUDING ALL);
         INSERT INTO {t}_end SELECT * FROM {t} WHERE id <= 22;"
    ))
    .await;
    // Every statement seen as it runs (unnamed statements), COPY and queries alike.
    let relay = crate::support::pgwire::Relay::start(&pg.url).await;
    let mut routes = String::new();
    for (name, table) in [("ranges", t.clone()), ("end", format!("{t}_end"))] {
        for via in ["copy", "queries"] {
            routes.push_str(&format!(
                "  - {{name: {name}-{via}, path: /{name}/{via}, table: {{database: main, name: {table}, columns: [id, blob], key: [id], export: {{chunk_rows: 100, chunk_bytes: 64KiB, via: {via}, parallel: 3}}}}}}\n"
            ));
        }
    }
    let yaml = format!(
        "admin: {{listen: 127.0.0.1:0}}\n{CURSORS}\npostgres: {{main: {{url: '{}', pool_size: 12, prepared_statements: unnamed}}}}\nroutes:\n{routes}",
        relay.url
    );
    let proxy = Proxy::start_url(&yaml, "http://127.0.0.1:9").await;
    let of_table = |before: usize| -> (usize, usize) {
        let statements = relay.statements();
        let mine = statements[before..].iter().filter(|s| s.contains(&t));
        let (ends, chunks): (Vec<&String>, Vec<&String>) = mine.partition(|s| s.contains("OFFSET"));
        (ends.len(), chunks.len())
    };
    for via in ["copy", "queries"] {
        let before = relay.statements().len();
        let export = get(&proxy.url(&format!("/ranges/{via}/export"))).await;
        assert_eq!(export.status, 200, "{}", export.text());
        assert_eq!(csv_records(&export.text()).len(), 441, "{via}: every row");
        // Each range is read by one chunk statement, so ranges run at once. Ranges of
        // `chunk_rows` rows would take five chunks each, one after the other.
        let (ends, chunks) = of_table(before);
        assert!(
            chunks >= 20 && chunks <= ends + 2,
            "{via}: {chunks} chunk statements for {ends} ranges"
        );
    }
    // The table's last row reaches the bound: the statement's end came with it, so the chunk
    // is whole, not cut. The end is read only if it has already arrived, which a loopback
    // server's reply almost always has; five tries are not all unlucky.
    for via in ["copy", "queries"] {
        for _ in 0..5 {
            let export = get(&proxy.url(&format!("/end/{via}/export"))).await;
            assert_eq!(csv_records(&export.text()).len(), 23, "{via}: every row");
        }
        let cut = cut_chunks(&proxy.metrics_text().await, &format!("end-{via}"));
        assert!(
            cut < 5.0,
            "{via}: {cut} of 5 exports had their last chunk cut"
        );
    }
    proxy.stop().await;
}
