//! The type matrix: a column of every built-in base type PostgreSQL ships with a text form
//! (read from `pg_type`, so a type left out fails), plus arrays, domains with and without a
//! `CHECK`, a sized domain, an enum, a row type and sized types, each driven through every role
//! the config allows it: filter operators, scope, ascending, descending and compound keys, pages,
//! both export paths in both formats, and a resume from every exported key. Every answer is
//! compared with PostgreSQL's own answer to the same `WHERE`/`ORDER BY`: no missing row, no
//! extra row, no row twice, every value exact, every export ending. Where a type cannot serve a
//! role, the start must refuse it and name that role and the config line.

use crate::support::postgres::{Postgres, csv_fields};
use crate::support::types::{BASE, DEFINITIONS, NO_TEXT_INPUT, OTHERS};
use crate::support::{Proxy, get};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

const CURSORS: &str =
    "cursors: {keys: [{id: 1, secret: test-secret-test-secret-test-secret-0123}]}";

/// One column type of the matrix.
#[derive(Debug, Clone)]
struct Kind {
    /// As a column declares it.
    spelled: String,
    samples: Vec<String>,
    /// pagegate serves it as a JSON string (numeric).
    numeric: bool,
}

/// Every kind, after checking that the base types listed are exactly PostgreSQL's.
async fn kinds(pg: &Postgres) -> Vec<Kind> {
    let client = pg.client().await;
    let names: Vec<String> = client
        .query(
            "SELECT t.typname::text FROM pg_type t
             WHERE t.typtype = 'b' AND t.typcategory <> 'A' AND t.typisdefined
               AND t.typnamespace = 'pg_catalog'::regnamespace ORDER BY 1",
            &[],
        )
        .await
        .expect("pg_type")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known = |n: &str| BASE.iter().any(|(b, _)| *b == n) || NO_TEXT_INPUT.contains(&n);
    let missing: Vec<&String> = names.iter().filter(|n| !known(n)).collect();
    assert!(
        missing.is_empty(),
        "base types without samples: {missing:?}"
    );
    for (name, _) in BASE {
        assert!(names.iter().any(|n| n == name), "{name} is not a base type");
    }
    for name in NO_TEXT_INPUT {
        let read = client
            .query(&format!("SELECT 'x'::pg_catalog.\"{name}\""), &[])
            .await;
        assert!(
            read.is_err(),
            "{name} reads text after all: give it samples"
        );
    }
    let p = &pg.prefix;
    client
        .batch_execute(&DEFINITIONS.replace("{p}", p))
        .await
        .expect("definitions");
    let mut kinds: Vec<Kind> = BASE
        .iter()
        .map(|(name, samples)| Kind {
            spelled: format!("pg_catalog.\"{name}\""),
            samples: samples.iter().map(|s| (*s).to_owned()).collect(),
            numeric: *name == "numeric",
        })
        .collect();
    kinds.extend(OTHERS.iter().map(|(spelled, samples)| Kind {
        spelled: spelled.replace("{p}", p),
        samples: samples.iter().map(|s| (*s).to_owned()).collect(),
        numeric: (spelled.starts_with("numeric") && !spelled.ends_with("[]"))
            || spelled.ends_with("_amount"),
    }));
    kinds
}

/// A client whose sessions read and write values as pagegate's do.
async fn session(pg: &Postgres) -> tokio_postgres::Client {
    let client = pg.client().await;
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
             SET extra_float_digits = 1",
        )
        .await
        .expect("session settings");
    client
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `value` as a constant of the kind's type.
fn typed(value: &str, kind: &Kind) -> String {
    format!("{}::{}", literal(value), kind.spelled)
}

fn encode(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

/// One CSV record of `values`, each quoted.
fn record(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("\"{}\"", v.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(",")
}

async fn ids(client: &tokio_postgres::Client, sql: &str) -> Result<Vec<i64>, String> {
    client
        .query(sql, &[])
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .map_err(|e| {
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
        })
}

/// Starts pagegate with `routes`, dropping each refused filter operator the start names
/// (asserting it names the role and its config line) until it starts: the proxy and the
/// operators refused.
async fn start_dropping_refused(
    pg: &Postgres,
    routes: impl Fn(&[&str]) -> String,
    column: &str,
) -> (Proxy, Vec<String>) {
    let mut ops = vec!["eq", "neq", "lt", "lte", "gt", "gte", "in", "is"];
    let mut refused = Vec::new();
    loop {
        let yaml = format!(
            "{CURSORS}\npostgres: {{main: {{url: '{}', pool_size: 4}}}}\nroutes:\n{}",
            pg.url,
            routes(&ops)
        );
        match Proxy::try_start_url(&yaml, "http://127.0.0.1:9").await {
            Ok(proxy) => return (proxy, refused),
            Err(error) => {
                let op = ops
                    .iter()
                    .position(|op| {
                        error.contains(&format!("`filters` allows `{op}` on `{column}`"))
                    })
                    .unwrap_or_else(|| {
                        panic!("{column}: the start refused no operator by name: {error}")
                    });
                assert!(
                    error.starts_with("test.yaml:")
                        && error
                            .split(':')
                            .nth(1)
                            .is_some_and(|l| l.parse::<u32>().is_ok()),
                    "{column}: the refusal has no FILE:LINE:COLUMN: {error}"
                );
                refused.push(format!("{} ({error})", ops[op]));
                ops.remove(op);
            }
        }
    }
}

/// Every row id of a page walk from `first`, following `Link: rel="next"`.
async fn walk(proxy: &Proxy, first: &str) -> Result<(Vec<i64>, Vec<Value>), String> {
    let (mut ids, mut rows) = (Vec::new(), Vec::new());
    let mut url = proxy.url(first);
    for _ in 0..200 {
        let got = get(&url).await;
        if got.status != 200 {
            return Err(format!("{} {}", got.status, got.text()));
        }
        let page = got.json();
        for row in page["data"].as_array().expect("data") {
            ids.push(row["id"].as_i64().expect("id"));
            rows.push(row.clone());
        }
        let Some(link) = got.header("link") else {
            return Ok((ids, rows));
        };
        let next = link.trim_start_matches('<').split('>').next().expect("url");
        url = proxy.url(next);
    }
    Err(format!("{first}: no end after 200 pages"))
}

/// The wide table: an id and one column per kind, each sample twice, NULL every fifth row.
async fn wide(pg: &Postgres, kinds: &[Kind]) -> String {
    let t = pg.name("wide");
    let columns: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(j, k)| format!("c{j} {}", k.spelled))
        .collect();
    let client = session(pg).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, {})",
            columns.join(", ")
        ))
        .await
        .expect("wide table");
    for id in 0..10_usize {
        let values: Vec<String> = kinds
            .iter()
            .map(|k| {
                if id % 5 == 4 {
                    "NULL".to_owned()
                } else {
                    literal(&k.samples[id % k.samples.len()])
                }
            })
            .collect();
        client
            .batch_execute(&format!(
                "INSERT INTO {t} VALUES ({id}, {})",
                values.join(", ")
            ))
            .await
            .expect("wide row");
    }
    for j in 0..kinds.len() {
        // A scope needs an index that starts with it; types without a btree order have none.
        let _ = client
            .batch_execute(&format!("CREATE INDEX ON {t} (c{j}, id)"))
            .await;
    }
    t
}

/// What PostgreSQL reads `text` (a field an export wrote for column `c` of `table`) as, in
/// SQL: an array written as JSON through its JSON mapping (a `json[]`'s or `jsonb[]`'s
/// elements one by one: each element is JSON, an array too), anything else cast.
fn read_back(table: &str, column: &str, kind: &Kind, text: &str) -> String {
    if kind.spelled.starts_with("json") && text.starts_with('[') {
        format!(
            "ARRAY(SELECT e::{} FROM json_array_elements({}::json) e)",
            kind.spelled.trim_end_matches("[]"),
            literal(text)
        )
    } else if kind.spelled.ends_with("[]") && text.starts_with('[') {
        format!(
            "(json_populate_record(NULL::{table}, json_build_object('{column}', {}::json))).{column}",
            literal(text)
        )
    } else {
        format!("{}::{}", literal(text), kind.spelled)
    }
}

/// Checks an export's CSV of `id` and column `c`: the rows `expected`, in order, each value
/// reading back as the stored one.
async fn check_csv(
    client: &tokio_postgres::Client,
    table: &str,
    (column, kind): (&str, &Kind),
    text: &str,
    expected: &[i64],
    what: &str,
) {
    let records = csv_fields(text);
    assert_eq!(
        records.first().map(Vec::as_slice),
        Some(&[Some("id".to_owned()), Some(column.to_owned())][..]),
        "{what}: header"
    );
    let got: Vec<i64> = records[1..]
        .iter()
        .map(|r| r[0].as_deref().expect("id").parse().expect("id"))
        .collect();
    assert_eq!(got, expected, "{what}: rows");
    for r in &records[1..] {
        let id = r[0].as_deref().expect("id");
        let same = match &r[1] {
            None => format!("SELECT {column} IS NULL FROM {table} WHERE id = {id}"),
            Some(text) => format!(
                "SELECT {column}::text = ({})::text FROM {table} WHERE id = {id}",
                read_back(table, column, kind, text)
            ),
        };
        let row = client
            .query_one(&same, &[])
            .await
            .unwrap_or_else(|e| panic!("{what}: {same}: {e}"));
        assert!(
            row.get::<_, bool>(0),
            "{what}: row {id} reads back otherwise: {r:?}"
        );
    }
}

/// The JSON pagegate gives `column` of `table`'s row `id`, as PostgreSQL maps it.
async fn json_of(
    client: &tokio_postgres::Client,
    table: &str,
    column: &str,
    kind: &Kind,
    id: &str,
) -> Value {
    let expression = if kind.numeric {
        format!("{column}::text")
    } else {
        column.to_owned()
    };
    let row = client
        .query_one(
            &format!(
                "SELECT json_build_object('v', {expression})::text FROM {table} WHERE id = {id}"
            ),
            &[],
        )
        .await
        .expect("json of a value");
    let object: Value = serde_json::from_str(row.get::<_, &str>(0)).expect("json");
    object["v"].clone()
}

/// Checks an NDJSON export: the rows `expected`, in order, each value as PostgreSQL maps it.
async fn check_ndjson(
    client: &tokio_postgres::Client,
    table: &str,
    (column, kind): (&str, &Kind),
    text: &str,
    expected: &[i64],
    what: &str,
) {
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: {e}: {l}")))
        .collect();
    let got: Vec<i64> = lines
        .iter()
        .map(|l| l["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(got, expected, "{what}: rows");
    for line in &lines {
        let id = line["id"].to_string();
        let want = json_of(client, table, column, kind, &id).await;
        assert_eq!(line[column], want, "{what}: row {id}");
    }
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one table per type, each filter's answer compared with PostgreSQL's own"
)]
async fn filters_scopes_pages_and_exports_answer_what_postgresql_answers() {
    let pg = Postgres::start();
    let kinds = kinds(&pg).await;
    let t = wide(&pg, &kinds).await;
    let client = session(&pg).await;
    let mut refusals = Vec::new();
    for (j, kind) in kinds.iter().enumerate() {
        let c = format!("c{j}");
        let routes = |ops: &[&str]| {
            let table = |via: &str| {
                format!(
                    "{{database: main, name: {t}, columns: [id, {c}], key: [id], filters: {{{c}: [{}]}}, export: {{via: {via}}}}}",
                    ops.join(", ")
                )
            };
            format!(
                "  - {{name: f, path: /f, table: {}}}\n  - {{name: q, path: /q, table: {}}}\n",
                table("copy"),
                table("queries")
            )
        };
        let (proxy, refused) = start_dropping_refused(&pg, routes, &c).await;
        refusals.extend(refused.iter().map(|r| format!("{}: {r}", kind.spelled)));
        let served: Vec<String> = ["eq", "neq", "lt", "lte", "gt", "gte", "in", "is"]
            .iter()
            .filter(|op| !refused.iter().any(|r| r.starts_with(&format!("{op} "))))
            .map(|op| (*op).to_owned())
            .collect();
        let what = |op: &str, value: &str| format!("{} {c}={op}.{value:?}", kind.spelled);
        // Unfiltered: every row, every value as PostgreSQL maps it, on both export paths.
        let all = ids(&client, &format!("SELECT id FROM {t} ORDER BY id"))
            .await
            .expect("all");
        let (walked, rows) = walk(&proxy, &format!("/f?fields=id,{c}&limit=3"))
            .await
            .expect("walk");
        assert_eq!(walked, all, "{}: pages", kind.spelled);
        for row in &rows {
            let want = json_of(&client, &t, &c, kind, &row["id"].to_string()).await;
            assert_eq!(
                row[&c], want,
                "{}: page value of row {}",
                kind.spelled, row["id"]
            );
        }
        for path in ["f", "q"] {
            let csv = get(&proxy.url(&format!("/{path}/export?fields=id,{c}"))).await;
            assert_eq!(csv.status, 200, "{}: {}", kind.spelled, csv.text());
            check_csv(
                &client,
                &t,
                (&c, kind),
                &csv.text(),
                &all,
                &format!("{} {path} csv", kind.spelled),
            )
            .await;
            let nd = get(&proxy.url(&format!("/{path}/export?fields=id,{c}&format=ndjson"))).await;
            assert_eq!(nd.status, 200, "{}: {}", kind.spelled, nd.text());
            check_ndjson(
                &client,
                &t,
                (&c, kind),
                &nd.text(),
                &all,
                &format!("{} {path} ndjson", kind.spelled),
            )
            .await;
        }
        // Every operator served, with every sample: the rows PostgreSQL finds.
        for op in &served {
            let cases: Vec<(String, String)> = match op.as_str() {
                "is" => vec![
                    ("null".to_owned(), format!("{c} IS NULL")),
                    ("not_null".to_owned(), format!("{c} IS NOT NULL")),
                ],
                "in" => {
                    let pair: Vec<&str> = kind.samples.iter().take(2).map(String::as_str).collect();
                    vec![(
                        record(&pair),
                        format!(
                            "{c} IN ({})",
                            pair.iter()
                                .map(|v| typed(v, kind))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )]
                }
                _ => {
                    let symbol = match op.as_str() {
                        "eq" => "=",
                        "neq" => "<>",
                        "lt" => "<",
                        "lte" => "<=",
                        "gt" => ">",
                        _ => ">=",
                    };
                    kind.samples
                        .iter()
                        .map(|v| (v.clone(), format!("{c} {symbol} {}", typed(v, kind))))
                        .collect()
                }
            };
            for (value, condition) in cases {
                let want = ids(
                    &client,
                    &format!("SELECT id FROM {t} WHERE {condition} ORDER BY id"),
                )
                .await
                .unwrap_or_else(|e| {
                    panic!("{}: PostgreSQL refused {condition}: {e}", what(op, &value))
                });
                let query = format!("{c}={op}.{}", encode(&value));
                let (got, _) = walk(&proxy, &format!("/f?fields=id&limit=2&{query}"))
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", what(op, &value)));
                assert_eq!(got, want, "{}: page rows", what(op, &value));
                for path in ["f", "q"] {
                    let csv =
                        get(&proxy.url(&format!("/{path}/export?fields=id,{c}&{query}"))).await;
                    assert_eq!(csv.status, 200, "{}: {}", what(op, &value), csv.text());
                    check_csv(
                        &client,
                        &t,
                        (&c, kind),
                        &csv.text(),
                        &want,
                        &format!("{} {path}", what(op, &value)),
                    )
                    .await;
                }
            }
        }
        proxy.stop().await;
        scope(&pg, &client, &t, (&c, kind), &mut refusals).await;
    }
    // What was refused, for the record (the README's table says the same).
    println!("refused roles:\n{}", refusals.join("\n"));
}

/// Scoping rows by column `c`: each sample as the scope header gets exactly the rows
/// PostgreSQL finds equal, or the start refuses the scope by name.
async fn scope(
    pg: &Postgres,
    client: &tokio_postgres::Client,
    t: &str,
    (c, kind): (&str, &Kind),
    refusals: &mut Vec<String>,
) {
    let yaml = format!(
        "{CURSORS}\npostgres: {{main: {{url: '{}'}}}}\nroutes:\n  - {{name: s, path: /s, table: {{database: main, name: {t}, columns: [id], key: [id], scope: {{column: {c}, header: X-Scope}}}}}}\n",
        pg.url
    );
    let proxy = match Proxy::try_start_url(&yaml, "http://127.0.0.1:9").await {
        Ok(proxy) => proxy,
        Err(error) => {
            assert!(
                error.contains("`scope`") && error.starts_with("test.yaml:"),
                "{}: a refused scope is named with its line: {error}",
                kind.spelled
            );
            refusals.push(format!("{}: scope ({error})", kind.spelled));
            return;
        }
    };
    // A header value cannot be empty, nor start or end with a space.
    for value in kind
        .samples
        .iter()
        .filter(|v| !v.is_empty() && v.trim() == v.as_str())
    {
        let want = ids(
            client,
            &format!(
                "SELECT id FROM {t} WHERE {c} = {} ORDER BY id",
                typed(value, kind)
            ),
        )
        .await
        .expect("scope rows");
        let got = crate::support::send(
            http::Request::get(proxy.url("/s?limit=100"))
                .header("x-scope", value.as_str())
                .body(crate::support::full(bytes::Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!(
            got.status,
            200,
            "{} scope {value:?}: {}",
            kind.spelled,
            got.text()
        );
        let rows: Vec<i64> = got.json()["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|r| r["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(rows, want, "{} scope {value:?}", kind.spelled);
    }
    proxy.stop().await;
}

/// The key values of one exported row as `after` takes them: a CSV field as written; from
/// NDJSON a string's text, a number's digits, an array's or object's JSON (and a json column's
/// JSON text, whatever it holds).
fn ndjson_key(line: &str, columns: &[&str], json_kinds: &[bool]) -> Vec<String> {
    let object: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(line).expect("an NDJSON object");
    columns
        .iter()
        .zip(json_kinds)
        .map(|(c, json)| {
            let raw = object[*c].get();
            if !json && raw.starts_with('"') {
                serde_json::from_str::<String>(raw).expect("a string")
            } else {
                raw.to_owned()
            }
        })
        .collect()
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one table per key type, paged, exported and resumed, compared row by row"
)]
async fn keys_page_export_and_resume_exactly() {
    let pg = Postgres::start();
    let kinds = kinds(&pg).await;
    let client = session(&pg).await;
    let keys = ["[v]", "[-v]", "[v, id]", "[-v, id]"];
    let orders = ["v", "v DESC", "v, id", "v DESC, id"];
    let mut refusals = Vec::new();
    for (j, kind) in kinds.iter().enumerate() {
        let t = pg.name(&format!("k{j}"));
        let values: Vec<String> = kind
            .samples
            .iter()
            .enumerate()
            .map(|(i, v)| format!("({}, {i})", literal(v)))
            .collect();
        client
            .batch_execute(&format!(
                "CREATE TABLE {t} (v {} NOT NULL, id bigint NOT NULL); INSERT INTO {t} VALUES {}",
                kind.spelled,
                values.join(", ")
            ))
            .await
            .expect("key table");
        let ordered = client
            .batch_execute(&format!(
                "CREATE UNIQUE INDEX ON {t} (v); CREATE INDEX ON {t} (v, id); CREATE INDEX ON {t} (v DESC, id)"
            ))
            .await
            .is_ok();
        let mut routes = String::new();
        for (i, key) in keys.iter().enumerate() {
            for via in ["copy", "queries"] {
                routes.push_str(&format!(
                    "  - {{name: k{i}{via}, path: /k{i}{via}, table: {{database: main, name: {t}, columns: [id, v], key: {key}, default_limit: 1, export: {{via: {via}, chunk_rows: 100}}}}}}\n"
                ));
            }
        }
        let yaml = format!(
            "{CURSORS}\npostgres: {{main: {{url: '{}', pool_size: 4}}}}\nroutes:\n{routes}",
            pg.url
        );
        let proxy = match Proxy::try_start_url(&yaml, "http://127.0.0.1:9").await {
            Ok(proxy) => proxy,
            Err(error) => {
                assert!(
                    !ordered,
                    "{}: a key a unique btree index orders is refused: {error}",
                    kind.spelled
                );
                assert!(
                    error.starts_with("test.yaml:") && error.contains("key"),
                    "{}: a refused key is named with its line: {error}",
                    kind.spelled
                );
                refusals.push(format!("{}: key ({error})", kind.spelled));
                continue;
            }
        };
        assert!(
            ordered,
            "{}: served as a key without a unique index",
            kind.spelled
        );
        let json_kind = kind.spelled.contains("json");
        for (i, order) in orders.iter().enumerate() {
            let want = ids(&client, &format!("SELECT id FROM {t} ORDER BY {order}"))
                .await
                .expect("order");
            let key_columns: Vec<&str> = if i < 2 { vec!["v"] } else { vec!["v", "id"] };
            let json_kinds: Vec<bool> =
                key_columns.iter().map(|c| *c == "v" && json_kind).collect();
            for via in ["copy", "queries"] {
                let route = format!("/k{i}{via}");
                let what = format!("{} key {} via {via}", kind.spelled, keys[i]);
                let (walked, _) = walk(&proxy, &format!("{route}?fields=id"))
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(walked, want, "{what}: pages");
                let csv = get(&proxy.url(&format!("{route}/export?fields=id,v"))).await;
                assert_eq!(csv.status, 200, "{what}: {}", csv.text());
                check_csv(
                    &client,
                    &t,
                    ("v", kind),
                    &csv.text(),
                    &want,
                    &format!("{what} csv"),
                )
                .await;
                let nd =
                    get(&proxy.url(&format!("{route}/export?fields=id,v&format=ndjson"))).await;
                assert_eq!(nd.status, 200, "{what}: {}", nd.text());
                check_ndjson(
                    &client,
                    &t,
                    ("v", kind),
                    &nd.text(),
                    &want,
                    &format!("{what} ndjson"),
                )
                .await;
                // A resume from every exported row's key, in each format's own writing.
                let records = csv_fields(&csv.text());
                for (p, r) in records[1..].iter().enumerate() {
                    let key: Vec<String> = key_columns
                        .iter()
                        .map(|c| r[usize::from(*c == "v")].clone().unwrap_or_default())
                        .collect();
                    let after = record(&key.iter().map(String::as_str).collect::<Vec<_>>());
                    let rest = get(&proxy.url(&format!(
                        "{route}/export?fields=id,v&after={}",
                        encode(&after)
                    )))
                    .await;
                    assert_eq!(rest.status, 200, "{what}: after={after}: {}", rest.text());
                    check_csv(
                        &client,
                        &t,
                        ("v", kind),
                        &rest.text(),
                        &want[p + 1..],
                        &format!("{what} csv after={after}"),
                    )
                    .await;
                }
                for (p, line) in nd.text().lines().enumerate() {
                    let key = ndjson_key(line, &key_columns, &json_kinds);
                    let after = record(&key.iter().map(String::as_str).collect::<Vec<_>>());
                    let rest = get(&proxy.url(&format!(
                        "{route}/export?fields=id,v&format=ndjson&after={}",
                        encode(&after)
                    )))
                    .await;
                    assert_eq!(rest.status, 200, "{what}: after={after}: {}", rest.text());
                    let got: Vec<i64> = rest
                        .text()
                        .lines()
                        .map(|l| {
                            serde_json::from_str::<Value>(l).expect("json")["id"]
                                .as_i64()
                                .expect("id")
                        })
                        .collect();
                    assert_eq!(got, want[p + 1..], "{what}: ndjson after={after}");
                }
            }
        }
        proxy.stop().await;
    }
    println!("refused keys:\n{}", refusals.join("\n"));
}
