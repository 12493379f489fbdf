//! Exports read with `COPY` and the query service's settings beyond the defaults, against a
//! real PostgreSQL the test starts itself: CSV written by `COPY` equals CSV written from query
//! rows byte for byte and NDJSON the same JSON values (every type, hostile text in values,
//! filters and keys, keys read back across chunks); a client that stops reading stops the
//! statements; text that is not UTF-8 is a 503; a read replica serves the exports; unnamed
//! statements leave nothing prepared (seen on the wire); `on_missing_index: warn` serves a key
//! no index walks; TLS to the database verifies the server's certificate, and a client that
//! leaves cancels its statement over TLS.

use std::time::Duration;

use crate::support::pgwire::Relay;
use crate::support::postgres::{Postgres, csv_records};
use crate::support::{Got, Proxy};

const CURSORS: &str =
    "cursors: {keys: [{id: 1, secret: test-secret-test-secret-test-secret-0123}]}";

/// pagegate with database `main` (`database` holds its settings, url included) and `routes`.
async fn serve(database: &str, routes: &str) -> Proxy {
    let yaml = format!("{CURSORS}\npostgres: {{main: {{{database}}}}}\nroutes:\n{routes}");
    Proxy::start_url(&yaml, "http://127.0.0.1:9").await
}

/// A route named and served at `/<name>` over `table`, with `settings` under `table:`.
fn route(name: &str, table: &str, settings: &str) -> String {
    format!(
        "  - {{name: {name}, path: /{name}, methods: [GET], table: {{database: main, name: {table}, {settings}}}}}\n"
    )
}

async fn text(proxy: &Proxy, path: &str) -> String {
    let got = crate::support::get(&proxy.url(path)).await;
    assert_eq!(got.status, 200, "{path}: {}", got.text());
    got.text()
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one table of rows compared byte for byte across two export paths"
)]
async fn exports_are_the_same_whether_copy_or_queries_read_them() {
    let pg = Postgres::start();
    let t = pg.name("odd");
    pg.execute(&format!(
        r#"CREATE DOMAIN {t}_ms AS bigint;
           CREATE TABLE {t} (k text PRIMARY KEY, ts timestamptz, local timestamp, flag boolean,
             amount numeric, ints int[], doc jsonb, day date, pad char(5), addr inet,
             f8 double precision, f4 real, vc varchar(10), u uuid, js json, i2 smallint,
             stamps timestamptz[], nums numeric[], names varchar[], ms {t}_ms);
           INSERT INTO {t} (k, pad, addr, f8, f4, vc, u, js, i2, stamps, nums, names, ms) VALUES
             ('types', 'ab', '10.1.2.3', 0.1, 1.5e-7, 'v,c', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
              E'{{"sp":\n [1, 2]}}', -32768, ARRAY['2024-05-01 10:00:00+00'::timestamptz, 'infinity'],
              '{{1.5,NaN}}', ARRAY['a"b', NULL, 'c,d'], 1714557600000);
           INSERT INTO {t} VALUES
             ('plain', '2026-01-01 00:00:00.123456+00', '2026-01-01 10:00:00', true, 1.50,
              '{{1,2}}', '{{"a": "x,y"}}', '2026-01-02'),
             ('', 'infinity', '-infinity', false, NULL, '{{}}', 'null', '0044-03-15 BC'),
             ('a,b', '0044-03-15 12:00:00+00 BC', '0044-03-15 12:00:00 BC', NULL, 0, NULL, NULL, NULL),
             ('say "hi"', '10000-01-01 00:00:00+00', '10000-01-01 00:00:00', true, -0.001,
              '{{3}}', '[1, "\\"]', 'infinity'),
             (E'two\nlines', '2026-05-01 10:00:00.5+00', NULL, false, 1e20, NULL, NULL, NULL),
             ('\.', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
             ('back\slash', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
             ('it''s', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
             (' lead', NULL, NULL, NULL, NULL, NULL, NULL, NULL);
           INSERT INTO {t} (k, ts)
             SELECT E'row, "' || g || E'"\n', timestamptz '2026-01-01' + g * interval '1 ms'
             FROM generate_series(1, 250) g;"#
    ))
    .await;
    let settings = "columns: [k, ts, local, flag, amount, ints, doc, day, pad, addr, f8, f4, vc, u, js, i2, \
                    stamps, nums, names, ms], key: [k], \
                    filters: {k: [neq, gte]}, export: {chunk_rows: 100, via: ";
    let routes = route("copy", &t, &format!("{settings}copy}}"))
        + &route("queries", &t, &format!("{settings}queries}}"));
    // Through the relay, to see which statements each route runs.
    let relay = Relay::start(&pg.url).await;
    let proxy = serve(&format!("url: '{}'", relay.url), &routes).await;
    let copies = || relay.copies();
    for query in [
        "",
        "?fields=k",
        "?fields=ts,flag",
        // Hostile text in a filter and in `after`: written into COPY as hex digits.
        "?k=neq.it's",
        "?k=gte.say%20%22hi%22",
        "?after=it's",
        "?after=back%5Cslash&k=neq.%5C.",
    ] {
        let before = copies();
        let copied = text(&proxy, &format!("/copy/export{query}")).await;
        assert!(copies() > before, "{query}: the copy route runs COPY");
        let before = copies();
        let written = text(&proxy, &format!("/queries/export{query}")).await;
        assert_eq!(copies(), before, "{query}: the queries route runs no COPY");
        assert_eq!(copied, written, "{query}");
        assert!(copied.lines().count() > 1, "{query}: rows exported");
        // NDJSON: JSON pagegate writes from COPY's CSV against PostgreSQL's row_to_json.
        let separator = if query.is_empty() { '?' } else { '&' };
        let before = copies();
        let copied = text(
            &proxy,
            &format!("/copy/export{query}{separator}format=ndjson"),
        )
        .await;
        assert!(copies() > before, "{query}: NDJSON runs COPY");
        let written = text(
            &proxy,
            &format!("/queries/export{query}{separator}format=ndjson"),
        )
        .await;
        assert_eq!(json_lines(&copied), json_lines(&written), "{query}");
    }
    // A NUL byte is no value PostgreSQL text can hold: 400 before any statement.
    for path in ["/copy/export?k=neq.a%00b", "/queries?k=neq.a%00b"] {
        let got = crate::support::get(&proxy.url(path)).await;
        assert_eq!(got.status, 400, "{path}: {}", got.text());
    }
    // NDJSON gives what pages give, for every type.
    let page = crate::support::get(&proxy.url("/copy?limit=1000"))
        .await
        .json();
    let ndjson = json_lines(&text(&proxy, "/copy/export?format=ndjson").await);
    assert_eq!(serde_json::Value::Array(ndjson), page["data"]);
    let csv = text(&proxy, "/copy/export").await;
    let records = csv_records(&csv);
    let mut keys: Vec<String> = pg
        .client()
        .await
        .query(&format!("SELECT k FROM {t} ORDER BY k"), &[])
        .await
        .expect("keys")
        .iter()
        .map(|r| r.get(0))
        .collect();
    keys.insert(0, "k".to_owned());
    let exported: Vec<String> = records.iter().map(|r| r[0].clone()).collect();
    // Each chunk's last key (quoted, with a comma, quotes and a newline) read back from the CSV.
    assert_eq!(exported, keys, "every row once, across three chunks");
    for line in [
        "k,ts,local,flag,amount,ints,doc,day,pad,addr,f8,f4,vc,u,js,i2,stamps,nums,names,ms\n",
        "\nplain,2026-01-01T00:00:00.123456+00:00,2026-01-01T10:00:00,true,1.50,\"[1,2]\",\"{\"\"a\"\": \"\"x,y\"\"}\",2026-01-02,,,,,,,,,,,,\n",
        "\n\"\",infinity,-infinity,false,,[],null,0044-03-15 BC,,,,,,,,,,,,\n",
        "\n\"a,b\",0044-03-15 12:00:00+00 BC,0044-03-15 12:00:00 BC,,0,,,,,,,,,,,,,,,\n",
        "\n\"say \"\"hi\"\"\",10000-01-01 00:00:00+00,10000-01-01 00:00:00,true,-0.001,[3],\"[1, \"\"\\\\\"\"]\",infinity,,,,,,,,,,,,\n",
        "\n\"two\nlines\",2026-05-01T10:00:00.5+00:00,,false,100000000000000000000,,,,,,,,,,,,,,,\n",
        "\n\\.,,,,,,,,,,,,,,,,,,,\n",
        "\nit's,,,,,,,,,,,,,,,,,,,\n",
        // Each type's output function on both paths, as pages show it: char(n) padded, inet
        // without a netmask; floats in their shortest exact form.
        concat!(
            "\ntypes,,,,,,,,ab   ,10.1.2.3,0.1,1.5e-07,\"v,c\",a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,",
            "\"{\"\"sp\"\":\n [1, 2]}\",-32768,",
            // Arrays as JSON, a domain over bigint as its number.
            "\"[\"\"2024-05-01T10:00:00+00:00\"\",\"\"infinity\"\"]\",\"[1.5,\"\"NaN\"\"]\",",
            "\"[\"\"a\\\"\"b\"\",null,\"\"c,d\"\"]\",1714557600000\n"
        ),
    ] {
        assert!(csv.contains(line), "{line:?} in\n{csv}");
    }
    // A lone `\.` is quoted, as COPY quotes its end-of-data marker.
    let keys_only = text(&proxy, "/copy/export?fields=k").await;
    assert!(keys_only.contains("\n\"\\.\"\n"), "{keys_only}");
    proxy.stop().await;
}

/// Each line of `text` as JSON (each must be one).
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

#[tokio::test]
async fn a_read_replica_serves_the_exports_and_the_primary_the_pages() {
    let pg = Postgres::start();
    let (t, replica) = (pg.name("events"), pg.name("replica"));
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, origin text NOT NULL);
         INSERT INTO {t} SELECT g, 'primary' FROM generate_series(1, 5) g;
         CREATE SCHEMA {replica};
         CREATE TABLE {replica}.{t} (id bigint PRIMARY KEY, origin text NOT NULL);
         INSERT INTO {replica}.{t} SELECT g, 'replica' FROM generate_series(1, 3) g;"
    ))
    .await;
    // The "replica" is the same server with the replica's schema first on the search path.
    let separator = if pg.url.contains('?') { '&' } else { '?' };
    let replica_url = format!("{}{separator}options=-c%20search_path%3D{replica}", pg.url);
    let proxy = serve(
        &format!("url: '{}', replica_url: '{replica_url}'", pg.url),
        &route("db", &t, "columns: [id, origin], key: [id]"),
    )
    .await;
    let page = crate::support::get(&proxy.url("/db")).await.json();
    let origins: Vec<&str> = page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["origin"].as_str().expect("origin"))
        .collect();
    assert_eq!(origins, ["primary"; 5]);
    assert_eq!(
        text(&proxy, "/db/export").await,
        "id,origin\n1,replica\n2,replica\n3,replica\n"
    );
    let ndjson = text(&proxy, "/db/export?format=ndjson").await;
    assert_eq!(ndjson.lines().count(), 3);
    assert!(
        ndjson.lines().all(|l| l.contains("\"replica\"")),
        "{ndjson}"
    );
    proxy.stop().await;
    // A replica whose table differs from the primary's (a migration not yet replayed) is
    // refused at start, as the primary's would be.
    let drifted = pg.name("drifted");
    pg.execute(&format!(
        "CREATE TABLE {drifted} (id bigint PRIMARY KEY, origin text NOT NULL, added int);
         CREATE TABLE {replica}.{drifted} (id bigint PRIMARY KEY, origin text NOT NULL);"
    ))
    .await;
    let yaml = format!(
        "listen: 127.0.0.1:0\n{CURSORS}\npostgres: {{main: {{url: '{}', replica_url: '{replica_url}'}}}}\nroutes:\n{}",
        pg.url,
        route("db", &drifted, "columns: [id, origin], key: [id]")
    );
    let config = pagegate::Config::parse("t.yaml", &yaml).expect("valid config");
    let error = match pagegate::Server::bind(config).await {
        Ok(_) => panic!("a drifted replica should be refused"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("read replica") && error.contains("other columns or types"),
        "{error}"
    );
}

#[tokio::test]
async fn unnamed_statements_leave_nothing_prepared_on_the_server_session() {
    let pg = Postgres::start();
    let t = pg.name("events");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, note text NOT NULL);
         INSERT INTO {t} SELECT g, 'note ' || g FROM generate_series(1, 30) g;"
    ))
    .await;
    let relay = Relay::start(&pg.url).await;
    let settings = "columns: [id, note], key: [id], filters: {id: [gt]}, default_limit: 10, \
                    export: {chunk_rows: 100}";
    let walk = |proxy: Proxy| async move {
        let first = crate::support::get(&proxy.url("/db?id=gt.2")).await;
        assert_eq!(first.status, 200, "{}", first.text());
        let cursor = first.json()["next_cursor"]
            .as_str()
            .expect("a next page")
            .to_owned();
        let next = crate::support::get(&proxy.url(&format!("/db?id=gt.2&cursor={cursor}"))).await;
        assert_eq!(next.status, 200, "{}", next.text());
        let csv = text(&proxy, "/db/export").await;
        assert_eq!(csv.lines().count(), 31);
        assert_eq!(
            text(&proxy, "/db/export?format=ndjson")
                .await
                .lines()
                .count(),
            30
        );
        proxy.stop().await;
        csv
    };
    let unnamed = serve(
        &format!("url: '{}', prepared_statements: unnamed", relay.url),
        &route("db", &t, settings),
    )
    .await;
    let unnamed_csv = walk(unnamed).await;
    let parsed = relay.parsed();
    assert!(
        parsed.len() >= 6,
        "the check, pages and exports parsed statements: {parsed:?}"
    );
    assert!(
        parsed.iter().all(String::is_empty),
        "every statement unnamed: {parsed:?}"
    );
    // The same requests with the default: named statements, which a transaction pooler could
    // hand to another server session. The CSV is the same either way.
    let cached = serve(&format!("url: '{}'", relay.url), &route("db", &t, settings)).await;
    assert_eq!(walk(cached).await, unnamed_csv);
    let named = relay.parsed()[parsed.len()..]
        .iter()
        .filter(|n| !n.is_empty())
        .count();
    assert!(
        named > 0,
        "cached statements are named: {:?}",
        relay.parsed()
    );
}

#[tokio::test]
async fn a_key_no_index_walks_is_served_with_a_warning_when_configured() {
    let pg = Postgres::start();
    let t = pg.name("unindexed");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, at timestamptz NOT NULL);
         INSERT INTO {t} SELECT g, timestamptz '2026-01-01' - g * interval '1 s'
         FROM generate_series(1, 5) g;"
    ))
    .await;
    let proxy = serve(
        &format!("url: '{}'", pg.url),
        &route(
            "db",
            &t,
            "columns: [id, at], key: [at, id], on_missing_index: warn",
        ),
    )
    .await;
    let page = crate::support::get(&proxy.url("/db")).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let ids: Vec<i64> = page.json()["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids, [5, 4, 3, 2, 1], "in key order");
    proxy.stop().await;
}

/// A CA, and a certificate it signed for `localhost` and 127.0.0.1 with its key (PEM).
fn certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("server key");
    let server =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("server certificate");
    (ca.pem(), server.pem(), key.serialize_pem())
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one TLS-enabled database, restarted with its certificates, tried with each sslmode"
)]
async fn tls_to_the_database_verifies_its_certificate() {
    let (ca, certificate, key) = certificates();
    let (other_ca, _, _) = certificates();
    let pg = Postgres::start_tls(&certificate, &key);
    let t = pg.name("events");
    // `silent` sorts 5,000 rows of 2 ms each before its first row: a statement that writes
    // nothing for ten seconds, which only a cancel request (over TLS) ends early.
    let silent = pg.name("silent");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY); INSERT INTO {t} VALUES (1), (2);
         CREATE VIEW {silent} AS SELECT g AS id FROM generate_series(1, 5000) g
           WHERE pg_sleep(0.002) IS NOT NULL;"
    ))
    .await;
    let dir = tempdir();
    let (trusted, untrusted) = (dir.join("ca.pem"), dir.join("other.pem"));
    std::fs::write(&trusted, ca).expect("write ca");
    std::fs::write(&untrusted, other_ca).expect("write ca");
    let database = |ca: &std::path::Path| {
        format!(
            "url: '{}?sslmode=verify-full', tls_ca_file: '{}', application_name: {}",
            pg.url,
            ca.display(),
            pg.name("tls")
        )
    };
    let routes = route("db", &t, "columns: [id], key: [id]")
        + &route("silent", &silent, "columns: [id], key: [id]");
    let proxy = serve(&database(&trusted), &routes).await;
    let page = crate::support::get(&proxy.url("/db")).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(
        page.json()["data"],
        serde_json::json!([{"id": 1}, {"id": 2}])
    );
    let ssl: Vec<bool> = pg
        .client()
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
            &[&pg.name("tls")],
        )
        .await
        .expect("pg_stat_ssl")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !ssl.is_empty() && ssl.iter().all(|s| *s),
        "pagegate's sessions use TLS: {ssl:?}"
    );
    // A client that leaves cancels the silent statement, over TLS.
    let active = || async {
        pg.client()
            .await
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'",
                &[&pg.name("tls")],
            )
            .await
            .expect("pg_stat_activity")
            .get::<_, i64>(0)
    };
    let url = proxy.url("/silent/export");
    let export = tokio::spawn(async move { crate::support::get(&url).await });
    let started = std::time::Instant::now();
    while active().await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the export's statement never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    export.abort();
    let _ = export.await;
    let left = std::time::Instant::now();
    while active().await != 0 {
        assert!(
            left.elapsed() < Duration::from_secs(2),
            "the silent statement still runs after the client left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.stop().await;
    // A certificate no trusted CA signed: no connection, 503.
    let proxy = serve(
        &database(&untrusted),
        &route("db", &t, "columns: [id], key: [id]"),
    )
    .await;
    let refused: Got = crate::support::get(&proxy.url("/db")).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    proxy.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pagegate-tls-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
async fn text_that_is_not_utf8_gets_500_never_a_panic() {
    // A SQL_ASCII database hands back bytes as they were stored, UTF-8 or not.
    let pg = Postgres::start_owned();
    pg.execute(
        "CREATE DATABASE legacy ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    )
    .await;
    let url = format!("{}/legacy", pg.url.rsplit_once('/').expect("a database").0);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to legacy");
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE latin (id bigint PRIMARY KEY, name text NOT NULL);
             INSERT INTO latin VALUES (1, 'plain'), (2, E'caf\\xe9');",
        )
        .await
        .expect("create latin");
    let settings = "columns: [id, name], key: [id], filters: {id: [eq]}";
    let routes = route("copy", "latin", settings)
        + &route(
            "queries",
            "latin",
            &format!("{settings}, export: {{via: queries}}"),
        );
    let proxy = serve(&format!("url: '{url}'"), &routes).await;
    for path in [
        "/copy",
        "/copy/export",
        "/copy/export?format=ndjson",
        "/queries/export",
        "/queries/export?format=ndjson",
    ] {
        // The database's fault, not the client's, and not passing: 500 with no Retry-After.
        let got = crate::support::get(&proxy.url(path)).await;
        assert_eq!(
            got.problem(500)["type"],
            "urn:pagegate:problem:internal",
            "{path}"
        );
        assert_eq!(got.header("retry-after"), None, "{path}");
    }
    // The valid row alone is served.
    let page = crate::support::get(&proxy.url("/copy?id=eq.1")).await;
    assert_eq!(page.status, 200, "{}", page.text());
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_stops_the_copy_statements() {
    let pg = Postgres::start();
    // 5,000 rows of 10 kB: 50 chunks of 1 MB, far more than the sockets between can buffer.
    let t = pg
        .wide_table("wide", 5000, "repeat(md5(g::text), 312)")
        .await;
    let relay = Relay::start(&pg.url).await;
    let proxy = serve(
        &format!("url: '{}'", relay.url),
        &route(
            "db",
            &t,
            "columns: [id, blob], key: [id], export: {chunk_rows: 100}",
        ),
    )
    .await;
    let copies = || relay.copies();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = proxy.url("").trim_start_matches("http://").to_owned();
    let mut client = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    client
        // HTTP/1.0: the body ends with the connection, unframed, so its lines are its rows.
        .write_all(b"GET /db/export HTTP/1.0\r\nHost: pagegate\r\n\r\n")
        .await
        .expect("request");
    let mut head = [0u8; 1024];
    let n = client.read(&mut head).await.expect("head");
    assert!(
        head[..n].starts_with(b"HTTP/1.0 200") || head[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );
    // The client reads nothing more for a while: the statements stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stalled = copies();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        copies(),
        stalled,
        "no statement runs while the client reads nothing"
    );
    assert!(
        stalled < 20,
        "{stalled} of 50 chunks read ahead of a client that reads nothing"
    );
    // It reads again: every row arrives, and the rest of the chunks are read.
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.expect("body");
    let response = [&head[..n], &rest[..]].concat();
    let start = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head")
        + 4;
    let body = &response[start..];
    assert!(
        body.starts_with(b"id,blob\n1,"),
        "{:?}",
        &body[..body.len().min(40)]
    );
    let lines = body.iter().filter(|b| **b == b'\n').count();
    assert_eq!(lines, 5001, "the header and every row");
    assert!(copies() >= 50, "{} statements", copies());
    proxy.stop().await;
}

#[tokio::test]
async fn a_pooler_that_drops_the_session_settings_is_refused_not_trusted() {
    // PgBouncer with `ignore_startup_parameters = options` connects without the settings
    // pagegate sends there: statements would run with no statement_timeout.
    let pg = Postgres::start();
    let t = pg.name("events");
    pg.execute(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, at timestamptz NOT NULL);
         INSERT INTO {t} VALUES (1, '2026-01-01 00:00:00+00');"
    ))
    .await;
    let settings = "columns: [id, at], key: [id]";
    let dropping = Relay::dropping_options(&pg.url).await;
    // A role that sets some of them itself is not enough: with `extra_float_digits = 0`,
    // float keys print rounded and pages repeat. Every setting is checked.
    let role = pg.name("partial");
    pg.execute(&format!(
        "CREATE ROLE {role} LOGIN;
         ALTER ROLE {role} SET TimeZone = 'UTC';
         ALTER ROLE {role} SET DateStyle = 'ISO, YMD';
         ALTER ROLE {role} SET statement_timeout = '5s';
         ALTER ROLE {role} SET idle_in_transaction_session_timeout = '5s';
         ALTER ROLE {role} SET extra_float_digits = 0;
         GRANT SELECT ON {t} TO {role};"
    ))
    .await;
    let as_role = dropping
        .url
        .replacen("://postgres@", &format!("://{role}@"), 1);
    assert_ne!(as_role, dropping.url, "the role's url");
    // (url, a setting the log names, one it does not)
    let cases = [
        (dropping.url.clone(), "TimeZone is", None),
        (as_role, "extra_float_digits is", Some("TimeZone is")),
    ];
    for (url, named, unnamed) in cases {
        let (captured, _guard) = crate::support::logs::capture();
        let proxy = serve(
            &format!("url: '{url}', statement_timeout: 5s"),
            &route("db", &t, settings),
        )
        .await;
        let got = crate::support::get(&proxy.url("/db")).await;
        assert_eq!(
            got.problem(503)["type"],
            "urn:pagegate:problem:database-unavailable"
        );
        let logged = captured.text();
        assert!(
            logged.contains(named) && unnamed.is_none_or(|u| !logged.contains(u)),
            "the log names each setting that differs, and only those: {logged}"
        );
        proxy.stop().await;
    }
    // Through a relay that passes them, the same route is served.
    let passing = Relay::start(&pg.url).await;
    let proxy = serve(
        &format!("url: '{}', statement_timeout: 5s", passing.url),
        &route("db", &t, settings),
    )
    .await;
    let page: serde_json::Value = serde_json::from_str(&text(&proxy, "/db").await).expect("json");
    assert_eq!(
        page["data"],
        serde_json::json!([{"id": 1, "at": "2026-01-01T00:00:00+00:00"}])
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_range_of_any_key_type_ends_at_its_last_key() {
    // A range is done when its last row's key, as its chunk read it, equals its end, as the
    // boundary walk read it: char(n), inet and boolean keys print differently as `::text`,
    // as their output function and as COPY's CSV writes them, and a mismatch costs an extra,
    // empty, statement per range. Every key type runs as many statements as a bigint key.
    let pg = Postgres::start();
    let base = pg.name("keys");
    pg.execute(&format!(
        "CREATE TABLE {base}_int (id bigint PRIMARY KEY);
         CREATE TABLE {base}_char (k char(8) PRIMARY KEY);
         CREATE TABLE {base}_inet (k inet PRIMARY KEY);
         CREATE TABLE {base}_bool (flag boolean NOT NULL, id bigint NOT NULL, PRIMARY KEY (flag, id));
         INSERT INTO {base}_int SELECT g FROM generate_series(1, 1000) g;
         INSERT INTO {base}_char SELECT lpad(g::text, 4, '0') FROM generate_series(1, 1000) g;
         INSERT INTO {base}_inet SELECT ('10.0.' || g / 256 || '.' || g % 256)::inet FROM generate_series(1, 1000) g;
         INSERT INTO {base}_bool SELECT g % 2 = 0, g FROM generate_series(1, 1000) g;"
    ))
    .await;
    // COPY chunks on `copying`; query chunks on `main`, whose unnamed statements the relay
    // sees every time they run (COPY is never used there).
    let (copying, queried) = (Relay::start(&pg.url).await, Relay::start(&pg.url).await);
    let mut yaml = format!(
        "{CURSORS}\npostgres:\n  main: {{url: '{}', prepared_statements: unnamed}}\n  copying: {{url: '{}'}}\nroutes:\n",
        queried.url, copying.url
    );
    let keys = [
        ("int", "id"),
        ("char", "k"),
        ("inet", "k"),
        ("bool", "flag, id"),
    ];
    for (name, key) in keys {
        for (via, database) in [("copy", "copying"), ("queries", "main")] {
            yaml.push_str(&format!(
                "  - {{name: {name}-{via}, path: /{name}-{via}, table: {{database: {database}, name: {base}_{name}, columns: [{key}], key: [{key}], export: {{chunk_rows: 100, parallel: 3, via: {via}}}}}}}\n"
            ));
        }
    }
    let proxy = Proxy::start_url(&yaml, "http://127.0.0.1:9").await;
    let mut counts = Vec::new();
    for (name, _) in keys {
        for (via, relay) in [("copy", &copying), ("queries", &queried)] {
            for format in ["csv", "ndjson"] {
                let ran = || match via {
                    "copy" => relay.copies(),
                    _ => relay.statements().len(),
                };
                let before = ran();
                let path = format!("/{name}-{via}/export?format={format}");
                let rows = text(&proxy, &path).await.lines().count();
                assert_eq!(rows, 1000 + usize::from(format == "csv"), "{path}");
                counts.push((name, via, format, ran() - before));
            }
        }
    }
    let int = counts[..4].to_vec();
    for (i, count) in counts.iter().enumerate() {
        // char(n) and inet NDJSON is built by PostgreSQL's `row_to_json`: read by queries,
        // with no COPY (the `queries` route counts those).
        let by_query = matches!(count, ("char" | "inet", "copy", "ndjson", _));
        let wanted = if by_query { 0 } else { int[i % 4].3 };
        assert_eq!(count.3, wanted, "{count:?} against {:?}", int[i % 4]);
    }
    proxy.stop().await;
}
