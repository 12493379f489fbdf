//! How table routes answer what goes wrong, against a real PostgreSQL: a value the database
//! refuses is the client's (400, naming the parameter, no ERROR in the log); a table that
//! changed under a route is read again; keys with commas, empty keys and long keys resume or
//! say why; `in` takes a CSV record; bytes that are not UTF-8 are refused; and one route flooded
//! with slow statements cannot take the connections another route needs.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::postgres::Postgres;
use crate::support::{Got, Proxy, get};

const CURSORS: &str =
    "cursors: {keys: [{id: 1, secret: test-secret-test-secret-test-secret-0123}]}";

/// Every log line the process writes, for the test that reads the log.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn install() -> Self {
        let log = Self::default();
        let writer = log.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        log
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log")).into_owned()
    }
}

async fn serve(pg: &Postgres, routes: &str, database: &str) -> Proxy {
    let yaml = format!(
        "{CURSORS}\npostgres: {{main: {{url: '{}', {database}}}}}\nroutes:\n{routes}",
        pg.url
    );
    Proxy::start_url(&yaml, "http://127.0.0.1:9").await
}

fn route(name: &str, table: &str, settings: &str) -> String {
    format!(
        "  - {{name: {name}, path: /{name}, table: {{database: main, name: {table}, {settings}}}}}\n"
    )
}

fn ids(got: &Got) -> Vec<i64> {
    assert_eq!(got.status, 200, "{}", got.text());
    got.json()["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect()
}

fn refused(got: &Got, parameter: &str, reason: &str) {
    let problem = got.problem(400);
    assert_eq!(problem["type"], "urn:pagegate:problem:invalid-query");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(parameter) && detail.contains(reason),
        "{detail:?} should name {parameter:?} and say {reason:?}"
    );
    assert!(!detail.contains("SELECT"), "no SQL is echoed: {detail}");
    assert_eq!(got.header("retry-after"), None);
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one table of refused values against one started database"
)]
async fn values_the_database_refuses_are_the_clients_and_named() {
    let log = Log::install();
    let pg = Postgres::start_owned();
    let p = &pg.prefix;
    // A small stack, so JSON nested a few hundred deep is past what PostgreSQL allows.
    pg.execute("ALTER DATABASE postgres SET max_stack_depth = '100kB'")
        .await;
    pg.execute(&format!(
        "CREATE DOMAIN {p}_positive AS integer CHECK (VALUE > 0);
         CREATE TABLE {p}_v (id bigint PRIMARY KEY, pos {p}_positive, doc jsonb, name text NOT NULL,
                             amounts numeric(5,2)[], tags text[], code {p}_positive NOT NULL DEFAULT 1,
                             words tsvector, rel regclass);
         INSERT INTO {p}_v VALUES (1, 1, '{{\"a\": 1}}', 'a', '{{1.23}}', '{{x}}'),
                                 (2, 2, '[1]', 'b,c', '{{1.5,2}}', '{{\"y,z\"}}'),
                                 (3, 3, '\"x\"', '', NULL, NULL), (4, 4, 'null', 'd', NULL, NULL);"
    ))
    .await;
    let settings = "columns: [id, pos, doc, name, amounts, tags, words, rel], key: [id], \
        filters: {pos: [eq], doc: [eq], name: [eq, in], amounts: [eq], tags: [eq], words: [eq], rel: [eq]}";
    let proxy = serve(&pg, &route("values", &format!("{p}_v"), settings), "").await;
    let page = |q: &str| {
        let url = proxy.url(&format!("/values?{q}"));
        async move { get(&url).await }
    };
    let export = |q: &str| {
        let url = proxy.url(&format!("/values/export?{q}"));
        async move { get(&url).await }
    };
    // A domain's CHECK (SQLSTATE 23514), on a page and an export (both paths).
    refused(
        &page("pos=eq.0").await,
        "the filter `pos=eq.…`",
        "it violates a check constraint of the column's type",
    );
    refused(
        &export("pos=eq.-1").await,
        "the filter `pos=eq.…`",
        "it violates a check constraint of the column's type",
    );
    refused(
        &export("pos=eq.-1&format=ndjson").await,
        "the filter `pos=eq.…`",
        "it violates a check constraint of the column's type",
    );
    let named = page("pos=eq.0").await.text();
    assert!(
        !named.contains("_positive"),
        "the domain stays unnamed: {named}"
    );
    // jsonb holding \u0000 is refused before the query.
    refused(
        &page("doc=eq.%7B%22a%22%3A%22%5Cu0000%22%7D").await,
        "the filter `doc=eq.…`",
        "\\u0000",
    );
    // An escaped backslash before u0000 is text, not a NUL.
    assert_eq!(
        ids(&page("doc=eq.%22%5C%5Cu0000%22").await),
        Vec::<i64>::new()
    );
    // Nested deeper than PostgreSQL allows (SQLSTATE 54001).
    let deep = format!("{}{}", "%5B".repeat(2000), "%5D".repeat(2000));
    refused(
        &page(&format!("doc=eq.{deep}")).await,
        "the filter `doc=eq.…`",
        "stack depth",
    );
    // The value at fault among several, in `after` too.
    refused(
        &export("name=eq.a&after=x").await,
        "`after` (its id value)",
        "invalid input syntax for type bigint",
    );
    // Arrays as exports write them (JSON), each element cast without the column's size: a
    // value that would round into a match is no match; a NUL escape is the client's.
    assert_eq!(ids(&page("amounts=eq.%5B1.23%5D").await), [1]);
    assert_eq!(
        ids(&page("amounts=eq.%5B1.234%5D").await),
        Vec::<i64>::new()
    );
    assert_eq!(ids(&page("amounts=eq.%7B1.5%2C2%7D").await), [2]);
    assert_eq!(ids(&page("tags=eq.%5B%22y%2Cz%22%5D").await), [2]);
    refused(
        &page("tags=eq.%5B%22%5Cu0000%22%5D").await,
        "the filter `tags=eq.…`",
        "unsupported Unicode escape sequence",
    );
    // Types whose input raises a class 42 code for bad text (a syntax error, an unknown name):
    // still the client's value, not a table that changed.
    refused(
        &page("words=eq.%27oops").await,
        "the filter `words=eq.…`",
        "syntax error in tsvector",
    );
    refused(
        &page("rel=eq.no_such_table").await,
        "the filter `rel=eq.…`",
        "does not exist",
    );
    assert_eq!(ids(&page("rel=eq.pg_class").await), Vec::<i64>::new());
    // `in` is one CSV record: quoted items hold commas, an empty item is the empty string.
    assert_eq!(ids(&page("name=in.a,%22b,c%22,").await), [1, 2, 3]);
    assert_eq!(ids(&page("name=in.%22%22").await), [3]);
    assert_eq!(ids(&page("name=eq.").await), [3]);
    let bad = page("name=in.a%22b").await;
    assert_eq!(
        bad.problem(400)["type"],
        "urn:pagegate:problem:invalid-query"
    );
    // Bytes that are not UTF-8 are refused, never read as U+FFFD.
    let latin = page("name=eq.%FF").await;
    assert!(
        latin.problem(400)["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not UTF-8")),
        "{}",
        latin.text()
    );
    proxy.stop().await;
    // Bad client text is no ERROR: only debug lines say the database refused a value (the
    // log is the whole test binary's: this route's lines are those naming it).
    let text = log.text();
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("values")).collect();
    assert!(
        ours.iter()
            .any(|l| l.contains("DEBUG") && l.contains("the database refused a value")),
        "the refusals are logged at debug:\n{text}"
    );
    let errors: Vec<&&str> = ours.iter().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "no ERROR line: {errors:#?}");
}

#[tokio::test]
async fn a_table_that_changes_under_a_route_is_read_again() {
    let pg = Postgres::start();
    let t = pg.name("changing");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, amount integer NOT NULL);
         INSERT INTO {t} SELECT g, g FROM generate_series(1, 20) g;"
    ))
    .await;
    let settings = "columns: [id, amount], key: [id], filters: {amount: [gt]}";
    let proxy = serve(&pg, &route("c", &t, settings), "pool_size: 2").await;
    let url = proxy.url("/c?amount=gt.19&limit=2");
    // Both connections prepare the statement.
    let (a, b) = tokio::join!(get(&url), get(&url));
    assert_eq!(a.json()["data"][0]["amount"], 20, "{}", a.text());
    assert_eq!(b.status, 200);
    pg.execute(&format!(
        "ALTER TABLE {t} ALTER COLUMN amount TYPE text USING amount::text"
    ))
    .await;
    // Each answer is the new type's or a 503 to retry: never the old type, never a 500.
    let mut served = None;
    for _ in 0..20 {
        let got = get(&url).await;
        match got.status.as_u16() {
            200 => {
                served = Some(got);
                break;
            }
            503 => {
                assert_eq!(
                    got.problem(503)["type"],
                    "urn:pagegate:problem:database-unavailable"
                );
                assert_eq!(got.retry_after(), 1);
            }
            _ => panic!("{} {}", got.status, got.text()),
        }
    }
    let served = served.expect("served again after the change");
    // Text now: compared as text ('2' > '19'), served as JSON strings.
    assert_eq!(
        served.json()["data"][0],
        serde_json::json!({"id": 2, "amount": "2"}),
        "{}",
        served.text()
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_column_named_like_pagegates_own_aliases_is_served_as_itself() {
    // The NDJSON export by query reads each row as `row_to_json` of a derived table aliased
    // `j`.
    let pg = Postgres::start();
    let t = pg.name("aliased");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, j integer, e text);
         INSERT INTO {t} VALUES (1, 10, 'a'), (2, 20, 'b');"
    ))
    .await;
    let proxy = serve(
        &pg,
        &route(
            "a",
            &t,
            "columns: [id, j, e], key: [id], export: {via: queries}",
        ),
        "",
    )
    .await;
    let got = get(&proxy.url("/a/export?format=ndjson")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let rows: Vec<serde_json::Value> = got
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON row"))
        .collect();
    assert_eq!(
        rows,
        [
            serde_json::json!({"id": 1, "j": 10, "e": "a"}),
            serde_json::json!({"id": 2, "j": 20, "e": "b"})
        ]
    );
    proxy.stop().await;
}

#[tokio::test]
async fn keys_with_commas_empty_or_long_resume_or_say_why() {
    let pg = Postgres::start();
    let t = pg.name("named");
    let long = "x".repeat(900);
    let longer = "y".repeat(3100);
    pg.execute(&format!(
        "CREATE TABLE {t} (name text PRIMARY KEY, n int NOT NULL);
         INSERT INTO {t} VALUES ('', 1), ('a,b', 2), ('say \"hi\"', 3), ('{long}', 4), ('{longer}', 5), ('z', 6);"
    ))
    .await;
    let settings = "columns: [name, n], key: [name], default_limit: 1";
    let proxy = serve(&pg, &route("k", &t, settings), "").await;
    // Each page reached through the cursor before it, the 900-character key's included.
    let mut url = proxy.url("/k");
    let mut names = Vec::new();
    let last = loop {
        let got = get(&url).await;
        if got.status != 200 {
            break got;
        }
        names.push(got.json()["data"][0]["n"].as_i64().expect("n"));
        let Some(link) = got.header("link") else {
            panic!("the 3100-character key should stop the walk: {names:?}")
        };
        url = proxy.url(link.trim_start_matches('<').split('>').next().expect("url"));
    };
    // Page 5 was asked for with the 900-character key's cursor; its own next key is over the
    // bound, so it says so, naming the column and the bound, rather than link to a cursor
    // pagegate would refuse.
    assert_eq!(names, [1, 2, 3, 4], "every page up to the longer key");
    let problem = last.problem(500);
    assert_eq!(problem["type"], "urn:pagegate:problem:key-too-long");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("`name`") && detail.contains("3030"),
        "{detail}"
    );
    // Exports resume after keys holding commas, quotes, or nothing, written as CSV writes them.
    for (after, rest) in [
        ("%22%22", vec![2, 3, 4, 5, 6]),
        ("%22a%2Cb%22", vec![3, 4, 5, 6]),
        ("%22say%20%22%22hi%22%22%22", vec![4, 5, 6]),
    ] {
        let got = get(&proxy.url(&format!("/k/export?format=ndjson&after={after}"))).await;
        assert_eq!(got.status, 200, "{after}: {}", got.text());
        let ns: Vec<i64> = got
            .text()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("json")["n"]
                    .as_i64()
                    .expect("n")
            })
            .collect();
        assert_eq!(ns, rest, "after={after}");
    }
    proxy.stop().await;
    // `check` warns that a text key has no bound length.
    let dir = crate::support::scratch_dir("check-key-length");
    let file = dir.join("pagegate.yaml");
    let mut yaml = std::fs::File::create(&file).expect("config");
    write!(
        yaml,
        "listen: 127.0.0.1:0\n{CURSORS}\npostgres: {{main: {{url: '{}'}}}}\nroutes:\n{}",
        pg.url,
        route("k", &t, settings)
    )
    .expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pagegate"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .expect("pagegate check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("warning: ")
            && stdout.contains("pagegate.yaml:5:")
            && stdout
                .contains("`key` names `name`, of type text, whose values have no bound length"),
        "{stdout}"
    );
}

/// `n` requests one after another: the longest wait for an answer, and the statuses.
async fn timed(url: &str, n: usize) -> (Duration, Vec<u16>) {
    let mut longest = Duration::ZERO;
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let got = get(url).await;
        longest = longest.max(started.elapsed());
        statuses.push(got.status.as_u16());
    }
    (longest, statuses)
}

#[tokio::test]
async fn one_flooded_route_cannot_take_the_connections_another_needs() {
    let pg = Postgres::start();
    let (slow, quick) = (pg.name("slow"), pg.name("quick"));
    pg.execute(&format!(
        "CREATE TABLE {slow} (id bigint PRIMARY KEY); INSERT INTO {slow} SELECT generate_series(1, 10);
         CREATE TABLE {quick} (id bigint PRIMARY KEY); INSERT INTO {quick} SELECT generate_series(1, 10);"
    ))
    .await;
    let routes = route("slow", &slow, "columns: [id], key: [id]")
        + &route("quick", &quick, "columns: [id], key: [id]");
    let proxy = serve(
        &pg,
        &routes,
        "pool_size: 4, statement_timeout: 10s, connect_timeout: 2s",
    )
    .await;
    let quick_url = proxy.url("/quick?limit=5");
    let (_, statuses) = timed(&quick_url, 5).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // The slow route's table is locked by a transaction the test holds: its statements wait,
    // using no CPU, until it ends.
    let holder = pg.client().await;
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {slow} IN ACCESS EXCLUSIVE MODE"
        ))
        .await
        .expect("lock");
    let slow_url = proxy.url("/slow");
    let flood: Vec<_> = (0..16)
        .map(|_| {
            let url = slow_url.clone();
            tokio::spawn(async move { get(&url).await.status.as_u16() })
        })
        .collect();
    let flooding = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (flooded, statuses) = timed(&quick_url, 40).await;
    // Held past connect_timeout, so the slow route's waiters give up.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(flooding.elapsed())).await;
    holder.batch_execute("ROLLBACK").await.expect("unlock");
    let slow_statuses: Vec<u16> = futures_util::future::join_all(flood)
        .await
        .into_iter()
        .map(|s| s.expect("flood"))
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "the quick route is served: {statuses:?}"
    );
    // None of them waited for a connection: a starved route waits connect_timeout (2 s) for
    // one, then answers 503. (Not a latency figure: half the timeout is far above any query.)
    assert!(
        flooded < Duration::from_secs(1),
        "a quick request waited {flooded:?} while the slow route was flooded"
    );
    // The slow route's own requests beyond its share waited connect_timeout, then got 503.
    assert!(
        slow_statuses.contains(&503) && slow_statuses.contains(&200),
        "{slow_statuses:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn domains_print_and_map_as_their_base_types() {
    let pg = Postgres::start();
    let (t, flag, moment, amount) = (
        pg.name("domained"),
        pg.name("flag"),
        pg.name("moment"),
        pg.name("amount"),
    );
    pg.execute(&format!(
        "CREATE DOMAIN {flag} AS boolean; CREATE DOMAIN {moment} AS timestamptz;
         CREATE DOMAIN {amount} AS numeric;
         CREATE TABLE {t} (id bigint PRIMARY KEY, b boolean, fb {flag}, m timestamptz,
                           fm {moment}, n numeric, fn {amount});
         INSERT INTO {t} VALUES
           (1, true, true, '2024-05-01 10:00:00+00', '2024-05-01 10:00:00+00',
            1.000000000000000000001, 1.000000000000000000001),
           (2, false, false, '1999-12-31 23:59:59.5+00', '1999-12-31 23:59:59.5+00', -2, -2);"
    ))
    .await;
    let columns = "columns: [id, b, fb, m, fm, n, fn], key: [id]";
    let routes = route("copy", &t, &format!("{columns}, export: {{via: copy}}"))
        + &route(
            "queries",
            &t,
            &format!("{columns}, export: {{via: queries}}"),
        );
    let proxy = serve(&pg, &routes, "").await;
    let pairs = [("b", "fb"), ("m", "fm"), ("n", "fn")];
    for via in ["copy", "queries"] {
        let csv = get(&proxy.url(&format!("/{via}/export"))).await;
        assert_eq!(csv.status, 200, "{}", csv.text());
        let records = crate::support::postgres::csv_records(&csv.text());
        assert_eq!(records[1][1..3], ["true", "true"], "{via}: {records:?}");
        assert_eq!(records[1][3..5], ["2024-05-01T10:00:00+00:00"; 2], "{via}");
        assert_eq!(records[1][5..7], ["1.000000000000000000001"; 2], "{via}");
        let ndjson = get(&proxy.url(&format!("/{via}/export?format=ndjson"))).await;
        assert_eq!(ndjson.status, 200, "{}", ndjson.text());
        assert_eq!(ndjson.text().lines().count(), 2, "{}", ndjson.text());
        for line in ndjson.text().lines() {
            let row: serde_json::Value = serde_json::from_str(line).expect("a JSON row");
            for (base, domain) in pairs {
                assert_eq!(row[base], row[domain], "{via} ndjson: {line}");
            }
        }
    }
    let page = get(&proxy.url("/copy")).await;
    for row in page.json()["data"].as_array().expect("data") {
        for (base, domain) in pairs {
            assert_eq!(row[base], row[domain], "page: {row}");
        }
    }
    assert_eq!(page.json()["data"][0]["fn"], "1.000000000000000000001");
    proxy.stop().await;
}

#[tokio::test]
async fn a_route_with_one_connection_names_the_bad_value_and_offers_its_formats() {
    let pg = Postgres::start_owned();
    let p = &pg.prefix;
    pg.execute(&format!(
        "CREATE DOMAIN {p}_pos AS integer CHECK (VALUE > 0);
         CREATE TABLE {p}_one (id bigint PRIMARY KEY, pos {p}_pos);
         INSERT INTO {p}_one VALUES (1, 1), (2, 2);"
    ))
    .await;
    let table = format!("{p}_one");
    let settings = "columns: [id, pos], key: [id], filters: {pos: [eq]}, max_connections: 1";
    let routes = route(
        "one",
        &table,
        &format!("{settings}, export: {{formats: [ndjson]}}"),
    ) + &route(
        "off",
        &table,
        &format!("{settings}, export: {{formats: []}}"),
    );
    let proxy = serve(&pg, &routes, "pool_size: 2, connect_timeout: 2s").await;
    // Finding the value to blame takes a connection: the failed statement's is given back
    // first, so its own request does not wait connect_timeout for it (then 503).
    let started = Instant::now();
    for url in ["/one?pos=eq.0", "/one/export?pos=eq.0"] {
        refused(
            &get(&proxy.url(url)).await,
            "the filter `pos=eq.…`",
            "it violates a check constraint of the column's type",
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Without `format`, the first the route offers; with none offered, no export at all.
    let got = get(&proxy.url("/one/export")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(got.text().lines().count(), 2, "{}", got.text());
    let problem = get(&proxy.url("/off/export")).await.problem(404);
    assert_eq!(problem["type"], "urn:pagegate:problem:no-route");
    let problem = get(&proxy.url("/off/export?format=csv")).await.problem(404);
    assert_eq!(problem["type"], "urn:pagegate:problem:no-route");
    assert_eq!(get(&proxy.url("/off")).await.status, 200);
    proxy.stop().await;
}
