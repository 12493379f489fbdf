use std::time::Duration;

use super::defaults::*;
use super::*;

const MINIMAL: &str = "upstreams: {app: {url: 'http://127.0.0.1:3000/api/'}}\nroutes: [{path: /events, upstream: app, list: {}}]\n";

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::parse("t.yaml", yaml)
}

/// Each line starts with its expected prefix, and there are as many.
fn assert_starts(lines: &[String], expected: &[&str]) {
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, prefix) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(prefix),
            "{line}\n  should start with\n{prefix}"
        );
    }
}

/// config/reference.yaml, its cursor key given in the file (the reference reads it from the
/// environment, which a unit test does not set).
fn reference() -> String {
    let key = format!("secret: {}", "k".repeat(48));
    include_str!("../../config/reference.yaml").replacen(
        "secret_env: PAGEGATE_CURSOR_KEY_1",
        &key,
        1,
    )
}

fn problems(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

#[test]
fn omitted_keys_take_the_documented_defaults() {
    let config = parse(MINIMAL).expect("valid");
    assert_eq!(config.server.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.server.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(config.server.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert_eq!(config.server.access_log, DEFAULT_ACCESS_LOG);
    assert!(config.server.traces.is_none());
    assert!(
        config
            .routes
            .iter()
            .all(|r| r.timeouts == TimeoutOverrides::default())
    );
    assert_eq!(config.default, DefaultPolicy::Deny);
    let app = &config.upstreams["app"];
    assert_eq!(app.base_path, "/api");
    assert_eq!(app.origin.to_string(), "http://127.0.0.1:3000/");
    assert_eq!(app.host, HostMode::Upstream);
    assert_eq!(app.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(app.response_timeout, DEFAULT_RESPONSE_TIMEOUT);
    assert_eq!(app.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    assert_eq!(app.pool_idle_timeout, DEFAULT_POOL_IDLE_TIMEOUT);
    assert_eq!(app.pool_max_idle, DEFAULT_POOL_MAX_IDLE);
    let list = config.routes[0].list.as_ref().expect("list");
    assert_eq!(list.limit_param, DEFAULT_LIMIT_PARAM);
    assert_eq!(
        list.offset,
        OffsetParam::Offset(DEFAULT_OFFSET_PARAM.to_owned())
    );
    assert_eq!(list.default_limit, DEFAULT_DEFAULT_LIMIT);
    assert_eq!(list.max_limit, DEFAULT_MAX_LIMIT);
    assert_eq!(list.max_offset, DEFAULT_MAX_OFFSET);
    assert_eq!(list.max_items, DEFAULT_MAX_LIMIT);
    assert_eq!(list.max_bytes, DEFAULT_MAX_BYTES);
    assert_eq!(list.on_violation, OnViolation::Clamp);
    assert_eq!(list.on_invalid, OnInvalid::Pass);
    assert!(list.items.0.is_empty());
}

#[test]
fn the_reference_file_shows_the_defaults() {
    let config = parse(&reference()).expect("reference.yaml is valid");
    let app = &config.upstreams["app"];
    assert_eq!(config.server.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(config.server.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert_eq!(
        config.server.header_read_timeout,
        DEFAULT_HEADER_READ_TIMEOUT
    );
    assert_eq!(config.server.max_head_bytes, DEFAULT_MAX_HEAD_BYTES);
    assert_eq!(
        config.max_held_bytes_per_client,
        DEFAULT_MAX_HELD_BYTES_PER_CLIENT
    );
    assert_eq!(
        config.server.http2_keepalive_interval,
        DEFAULT_HTTP2_KEEPALIVE_INTERVAL
    );
    assert_eq!(
        config.server.http2_keepalive_timeout,
        DEFAULT_HTTP2_KEEPALIVE_TIMEOUT
    );
    assert_eq!(config.server.http2_idle_timeout, DEFAULT_HTTP2_IDLE_TIMEOUT);
    let redis = config.redis.as_ref().expect("redis");
    assert_eq!(redis.timeout, DEFAULT_REDIS_TIMEOUT);
    assert_eq!(redis.lease_ttl, DEFAULT_LEASE_TTL);
    assert_eq!(redis.key_prefix, DEFAULT_REDIS_KEY_PREFIX);
    let export = config.routes[1]
        .limits
        .as_ref()
        .expect("the export's limits");
    assert_eq!(export.max_clients, DEFAULT_LIMIT_MAX_CLIENTS);
    assert_eq!(export.queue.map(|q| q.timeout), Some(DEFAULT_QUEUE_TIMEOUT));
    assert_eq!(config.server.http2_max_resets, DEFAULT_HTTP2_MAX_RESETS);
    assert_eq!(app.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(app.response_timeout, DEFAULT_RESPONSE_TIMEOUT);
    assert_eq!(app.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    assert_eq!(app.pool_idle_timeout, DEFAULT_POOL_IDLE_TIMEOUT);
    assert_eq!(app.pool_max_idle, DEFAULT_POOL_MAX_IDLE);
    assert_eq!(config.server.access_log, DEFAULT_ACCESS_LOG);
    let traces = config.server.traces.as_ref().expect("traces");
    assert_eq!(traces.service_name, DEFAULT_TRACES_SERVICE_NAME);
    assert!((traces.sample_ratio - DEFAULT_TRACES_SAMPLE_RATIO).abs() < f64::EPSILON);
    assert_eq!(
        config.routes[1].timeouts,
        TimeoutOverrides {
            response: Some(std::time::Duration::from_secs(120)),
            idle: Some(DEFAULT_IDLE_TIMEOUT),
        }
    );
    let list = config.routes[0].list.as_ref().expect("list");
    assert_eq!(list.default_limit, DEFAULT_DEFAULT_LIMIT);
    assert_eq!(list.max_limit, DEFAULT_MAX_LIMIT);
    assert_eq!(list.max_offset, DEFAULT_MAX_OFFSET);
    assert_eq!(list.max_bytes, DEFAULT_MAX_BYTES);
    let keyset = list.keyset.as_ref().expect("keyset");
    assert_eq!(keyset.cursor_param, DEFAULT_CURSOR_PARAM);
    assert_eq!(keyset.keys.len(), 2);
    assert_eq!(
        keyset.set_params,
        vec![("sort".to_owned(), "created_at%2Cid".to_owned())]
    );
}

#[test]
fn durations_and_sizes_are_typed() {
    let yaml = "upstreams: {app: {url: 'http://h:1', connect_timeout: 250ms, idle_timeout: 2m}}\nroutes: [{path: /e, upstream: app, list: {max_bytes: 512KiB}}]\n";
    let config = parse(yaml).expect("valid");
    assert_eq!(
        config.upstreams["app"].connect_timeout,
        Duration::from_millis(250)
    );
    assert_eq!(
        config.upstreams["app"].idle_timeout,
        Duration::from_secs(120)
    );
    assert_eq!(
        config.routes[0].list.as_ref().expect("list").max_bytes,
        512 * 1024
    );
}

#[test]
fn client_socket_sizes_are_bounded() {
    let config = parse(&format!("send_buffer: 256KiB\n{MINIMAL}")).expect("valid");
    assert_eq!(config.server.send_buffer, Some(256 * 1024));
    assert_eq!(parse(MINIMAL).expect("valid").server.send_buffer, None);
    let lines = problems(&format!(
        "send_buffer: 1KiB\nmax_head_bytes: 2MiB\n{MINIMAL}"
    ));
    assert_starts(
        &lines,
        &[
            "t.yaml:1:14: `send_buffer` is 1KiB: a socket's send buffer is kernel memory per connection (unset, the kernel sizes it), so keep it between 4KiB and 64MiB",
            "t.yaml:2:17: `max_head_bytes` is 2MiB: a head's memory is held per connection (max_connections x max_head_bytes), so keep it between 8KiB and 1MiB",
        ],
    );
}

#[test]
fn values_out_of_range_are_refused_with_the_fix() {
    let yaml = "\
upstreams: {app: {url: 'ftp://h:1/x'}, b: {url: 'http://h:2', connect_timeout: 0s}}
routes:
  - path: nope
    upstream: app
    methods: [get]
    list: {default_limit: 0, max_bytes: 10GiB, items: data, page_param: page, offset_param: offset}
";
    let lines = problems(yaml);
    let expected = [
        "t.yaml:1:24: `url` is \"ftp://h:1/x\": write http://HOST:PORT[/prefix] or https://HOST:PORT[/prefix] (no query)",
        "t.yaml:1:80: `connect_timeout` must be longer than zero",
        "t.yaml:3:11: `path` is \"nope\": a path starts with `/`",
        "t.yaml:5:15: `methods` contains \"get\": write methods in capitals, e.g. GET",
        "t.yaml:6:11: `list` applies to GET (and HEAD) requests, but this route's `methods` has no GET",
        "t.yaml:6:27: `default_limit` is 0: it must be at least 1",
        "t.yaml:6:41: `max_bytes` is 10GiB: a page is held in memory, so keep it between 1KiB and 256MiB",
        "t.yaml:6:55: `items` is \"data\": write a JSON pointer to the array",
        "t.yaml:6:93: `offset_param` and `page_param` are both set",
    ];
    assert_starts(&lines, &expected);
}

#[test]
fn default_policy_and_cursor_keys_are_checked() {
    let yaml = "\
default: {action: pass}
upstreams: {app: {url: 'http://h:1'}}
cursors:
  keys:
    - {id: 1, secret: short}
    - {id: 2, secret_env: PAGEGATE_TEST_SURELY_UNSET_VARIABLE}
    - {id: 3}
    - {id: 4, secret: replace-me-with-openssl-rand-base64-48-output}
";
    let lines = problems(yaml);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    assert!(
        lines[0].starts_with("t.yaml:1:19: `default.action` is `pass` but no `upstream` is named")
    );
    assert!(lines[1].contains("`secret` of key 1 is 5 bytes: use at least 32 random bytes"));
    assert!(lines[2].contains("names $PAGEGATE_TEST_SURELY_UNSET_VARIABLE, which is not set"));
    assert!(lines[3].contains("each key needs exactly one of `secret` or `secret_env`"));
    assert!(lines[4].contains("`secret` of key 4 is the examples' placeholder"));
}

#[test]
fn keyset_rules_are_checked() {
    let yaml = "\
upstreams: {app: {url: 'http://h:1'}}
cursors: {keys: [{id: 1, secret: 0123456789abcdef0123456789abcdef}]}
routes:
  - path: /a
    upstream: app
    list:
      keyset:
        keys: [{field: id, param: limit}]
        next_cursor_field: next
  - path: /b
    upstream: app
    list:
      keyset: {keys: []}
";
    let lines = problems(yaml);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].contains("`field` is \"id\": write a JSON pointer into each item"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("`param` `limit` is already used by this route"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("`next_cursor_field` needs an envelope response"),
        "{}",
        lines[2]
    );
    assert!(lines[3].contains("`keys` has 0 entries"), "{}", lines[3]);
}

#[test]
fn duplicate_keys_and_yaml_errors_have_positions() {
    let lines = problems("upstreams: {app: {url: 'http://h:1'}}\nlisten: a\nlisten: b\n");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("t.yaml:3:1: "), "{}", lines[0]);
    let lines = problems("upstreams: [unclosed\n");
    assert!(lines[0].starts_with("t.yaml:"), "{}", lines[0]);
}

#[test]
fn pointers_follow_rfc_6901() {
    assert_eq!(parse_pointer(""), Some(vec![]));
    assert_eq!(parse_pointer("/data"), Some(vec!["data".to_owned()]));
    assert_eq!(
        parse_pointer("/a~1b/c~0d"),
        Some(vec!["a/b".to_owned(), "c~d".to_owned()])
    );
    assert_eq!(parse_pointer("data"), None);
    assert_eq!(parse_pointer("/a~2"), None);
}

#[test]
fn parameters_with_two_jobs_and_unholdable_pages_are_refused() {
    let yaml = "\
max_held_bytes: 16MiB
upstreams: {app: {url: 'http://h:1'}}
cursors: {keys: [{id: 1, secret: 0123456789abcdef0123456789abcdef}]}
routes:
  - path: /a
    upstream: app
    list:
      page_param: page
      keyset: {keys: [{field: /id, param: id_gt}]}
  - path: /b
    upstream: app
    list:
      limit_param: n
      offset_param: n
  - path: /c
    upstream: app
    list:
      max_bytes: 32MiB
      keyset: {keys: [{field: /id, param: id_gt}], cursor_param: limit}
  - path: /d
    methods: [POST]
    upstream: app
    list: {}
  - path: /e
    upstream: app
    allow_read_body: true
    list: {}
";
    let lines = problems(yaml);
    let wanted = [
        "`page_param` cannot be combined with `keyset`",
        "`limit_param` and the offset parameter are both `n`",
        "`max_bytes` of route `/c` (32MiB) exceeds max_held_bytes (16MiB)",
        "`cursor_param` `limit` is already used by this route",
        "`list` applies to GET (and HEAD) requests, but this route's `methods` has no GET",
        "`list` cannot be combined with `allow_read_body: true`",
    ];
    assert_eq!(lines.len(), wanted.len(), "{lines:#?}");
    // The held-budget problem points at the route's own `max_bytes`.
    let at = 1 + yaml
        .lines()
        .position(|l| l.contains("max_bytes: 32MiB"))
        .expect("line");
    assert!(
        lines.iter().any(
            |l| l.starts_with(&format!("t.yaml:{at}:")) && l.contains("max_held_bytes (16MiB)")
        ),
        "{lines:#?}"
    );
    for want in wanted {
        assert!(
            lines.iter().any(|l| l.contains(want)),
            "missing {want:?} in {lines:#?}"
        );
    }
}

#[test]
fn set_params_are_checked_and_encoded() {
    let base = "\
upstreams: {app: {url: 'http://h:1'}}
cursors: {keys: [{id: 1, secret: 0123456789abcdef0123456789abcdef}]}
routes:
  - path: /a
    upstream: app
    list:
      keyset:
        keys: [{field: /id, param: id_gt}]
        set_params: SET
";
    let config = parse(&base.replace("SET", "{order: 'created_at desc, id'}")).expect("valid");
    let keyset = config.routes[0]
        .list
        .as_ref()
        .and_then(|l| l.keyset.clone())
        .expect("keyset");
    assert_eq!(
        keyset.set_params,
        vec![("order".to_owned(), "created_at+desc%2C+id".to_owned())]
    );
    let lines = problems(&base.replace("SET", "{'bad name': x, limit: 5}"));
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines.iter().all(|l| l.contains("`set_params` sets")));
}

#[test]
fn trusted_proxies_take_addresses_and_ranges_and_replace_trust_forwarded() {
    let config = parse(&format!(
        "trusted_proxies: [10.0.0.0/8, 192.0.2.7, '2001:db8::/32']\n{MINIMAL}"
    ))
    .expect("valid");
    for (ip, trusted) in [
        ("10.1.2.3", true),
        ("192.0.2.7", true),
        ("192.0.2.8", false),
        ("2001:db8::1", true),
        ("::ffff:10.0.0.1", true),
    ] {
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        assert_eq!(config.server.trusted_proxies.contains(ip), trusted, "{ip}");
    }
    assert_eq!(
        problems(&format!(
            "trusted_proxies: [10.0.0.0/33, proxy.local]\n{MINIMAL}"
        )),
        [
            "t.yaml:1:19: `trusted_proxies` contains \"10.0.0.0/33\": write an address or a CIDR range, such as 10.0.0.5 or 10.0.0.0/8",
            "t.yaml:1:32: `trusted_proxies` contains \"proxy.local\": write an address or a CIDR range, such as 10.0.0.5 or 10.0.0.0/8",
        ]
    );
    let old = problems(&format!("trust_forwarded: true\n{MINIMAL}"));
    assert_eq!(old.len(), 1);
    assert!(
        old[0].starts_with("t.yaml:1:18: `trust_forwarded` was replaced by `trusted_proxies`"),
        "{old:?}"
    );
}

#[test]
fn limits_are_typed_and_their_mistakes_located() {
    let yaml = "\
upstreams: {app: {url: 'http://h:1'}}
default: {action: pass, upstream: app, limits: {rate: {total: {requests: 100, per: 1s}}}}
routes:
  - path: /export
    upstream: app
    limits: {key: header, key_header: X-Api-Key, rate: {per_client: {requests: 5, per: 1m}}, concurrency: {per_client: 1, total: 8, queue: 4}}
";
    let config = parse(yaml).expect("valid");
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let limits = config.routes[0].limits.as_ref().expect("limits");
    assert_eq!(
        limits.key,
        ClientKeySource::Header(http::HeaderName::from_static("x-api-key"))
    );
    // A name with `_` works, and is warned about: nginx in front drops it by default.
    let underscored = parse(&yaml.replace("X-Api-Key", "api_key")).expect("valid");
    assert_starts(
        &underscored.warnings,
        &[
            "t.yaml:6:39: `key_header` is api_key, with `_`: nginx drops such names by default (underscores_in_headers off), so a client behind one cannot send it; write api-key unless",
        ],
    );
    let rate = limits.rate_per_client.expect("a rate");
    assert_eq!(
        (rate.requests.get(), rate.per, rate.burst.get()),
        (5, Duration::from_secs(60), 5)
    );
    assert_eq!(limits.concurrency_total.map(|n| n.get()), Some(8));
    assert_eq!(limits.queue.map(|q| q.timeout), Some(DEFAULT_QUEUE_TIMEOUT));
    assert_eq!(limits.max_clients, DEFAULT_LIMIT_MAX_CLIENTS);
    assert!(
        config
            .default_limits
            .as_ref()
            .is_some_and(|l| l.rate_total.is_some())
    );

    let yaml = "\
upstreams: {app: {url: 'http://h:1'}}
routes:
  - {path: /a, upstream: app, limits: {key: header}}
  - {path: /b, upstream: app, limits: {rate: {per_client: {requests: 0, per: 500ms}}}}
  - {path: /c, upstream: app, limits: {concurrency: {per_client: 9, total: 2, queue_timeout: 1s}}}
  - {path: /d, upstream: app, limits: {key_header: X-Key, rate: {}}}
  - {path: /e, upstream: app, limits: {store: redis, rate: {total: {requests: 1, per: 1s}}}}
  - {path: /f, upstream: app, limits: {rate: {per_client: {requests: 1, per: 1s}, per_address: {requests: 4, per: 1s}}}}
";
    let lines = problems(yaml);
    let expected = [
        "t.yaml:3:39: `limits` sets no limit: add `rate`, `concurrency`, `pace` or `quota`",
        "t.yaml:3:45: `key` names a header key: add `key_header`",
        "t.yaml:4:70: `requests` is 0: a rate's `requests` is a whole number from 1",
        "t.yaml:4:78: `per` is \"500ms\": write a whole number of seconds",
        "t.yaml:5:66: `per_client` (9) is above `total` (2)",
        "t.yaml:5:94: `queue_timeout` is only read with `queue`",
        "t.yaml:6:52: `key_header` is only read with `key: header`",
        "t.yaml:6:65: `rate` sets no rate: add `per_client` or `total`",
        "t.yaml:7:47: `store` is `redis`, but no top-level `redis` is configured",
        "t.yaml:8:96: `per_address` applies only with `key: header_and_client`",
    ];
    assert_starts(&lines, &expected);
}

#[test]
fn the_redis_connection_is_checked() {
    let lines = problems(
        "redis: {url: 'http://h:6379', key_prefix: 'a b', lease_ttl: 300ms}\nupstreams: {app: {url: 'http://h:1'}}\n",
    );
    let expected = [
        "t.yaml:1:14: `url` is \"http://h:6379\": write redis://",
        "t.yaml:1:43: `key_prefix` is \"a b\": use letters, digits",
        "t.yaml:1:61: `lease_ttl` is below 1s",
    ];
    assert_starts(&lines, &expected);
}

#[test]
fn a_redis_topology_is_one_of_url_cluster_and_sentinel() {
    let lines = problems(
        "redis: {url: 'redis://a:6379', cluster: ['redis://b:7000']}\nupstreams: {app: {url: 'http://h:1'}}\n",
    );
    assert_starts(
        &lines,
        &["t.yaml:1:8: `redis` needs exactly one of `url` (one server), `cluster` (seed nodes"],
    );
    let lines = problems("redis: {cluster: []}\nupstreams: {app: {url: 'http://h:1'}}\n");
    assert_starts(
        &lines,
        &["t.yaml:1:18: `cluster` is empty: list at least one redis://HOST:PORT"],
    );
    let lines = problems(
        "redis: {sentinel: {master: ' ', urls: ['redis://s:26379', 'http://t:26379']}}\nupstreams: {app: {url: 'http://h:1'}}\n",
    );
    assert_starts(
        &lines,
        &[
            "t.yaml:1:28: `master` is empty: write the name the Sentinels monitor the master by",
            "t.yaml:1:59: `urls` is \"http://t:26379\": write redis://",
        ],
    );
}

#[test]
fn tls_to_redis_takes_rediss_urls_everywhere() {
    let up = "upstreams: {app: {url: 'http://h:1'}}\n";
    let lines = problems(&format!(
        "redis: {{url: 'redis://a:6379', tls: {{}}}}\n{up}"
    ));
    assert_starts(
        &lines,
        &["t.yaml:1:37: `tls` is set for redis:// urls: write them with rediss://"],
    );
    let lines = problems(&format!(
        "redis: {{cluster: ['rediss://a:7000', 'redis://b:7000']}}\n{up}"
    ));
    assert_starts(
        &lines,
        &["t.yaml:1:8: `redis` mixes redis:// and rediss:// urls"],
    );
    let lines = problems(&format!(
        "redis: {{url: 'rediss://u:s3cret@a:6379/#insecure'}}\n{up}"
    ));
    assert_starts(
        &lines,
        &["t.yaml:1:14: `url` is \"rediss://u:[redacted]@a:6379/#insecure\": remove the #fragment"],
    );
    assert!(!lines.concat().contains("s3cret"), "{lines:?}");
    let lines = problems(&format!(
        "redis: {{url: 'rediss://a:6379', tls: {{cert_file: /nonexistent.crt}}}}\n{up}"
    ));
    assert_starts(
        &lines,
        &["t.yaml:1:50: `cert_file` is set without key_file"],
    );
}

#[test]
fn table_routes_are_typed_and_their_mistakes_located() {
    let cursors = "cursors: {keys: [{id: 1, secret: test-secret-test-secret-test-secret-0123}]}";
    let yaml = format!(
        "{cursors}
postgres: {{main: {{url: 'postgres://u:${{PG_PASS}}@h:5432/app'}}}}
routes:
  - {{name: db, path: /db, table: {{database: main, name: app.events, columns: [id, at, s], key: [-at, id], filters: {{s: [eq, in]}}}}}}
"
    );
    let config = parse(&yaml).expect("valid");
    assert_eq!(config.postgres["main"].env_vars(), ["PG_PASS"]);
    assert_eq!(
        config.postgres["main"].statement_timeout,
        DEFAULT_STATEMENT_TIMEOUT
    );
    let Target::Table(table) = &config.routes[0].target else {
        panic!("a table route");
    };
    assert_eq!(
        table.key,
        [
            KeyColumn {
                column: "at".to_owned(),
                descending: true
            },
            KeyColumn {
                column: "id".to_owned(),
                descending: false
            }
        ]
    );
    assert_eq!(table.default_fields, ["id", "at", "s"]);
    assert_eq!(table.chunk_rows, DEFAULT_CHUNK_ROWS);
    assert_eq!(
        table.chunk_bytes,
        crate::config::defaults::DEFAULT_CHUNK_BYTES
    );
    assert_eq!(
        table.parallel,
        crate::config::defaults::DEFAULT_EXPORT_PARALLEL
    );
    assert_eq!(table.filters["s"], [FilterOp::Eq, FilterOp::In]);

    let yaml = "\
postgres: {main: {url: 'mysql://h/db'}}
routes:
  - {path: /a, table: {database: other, name: 'x;drop', columns: [id, id], key: [nope], filters: {id: [like]}}}
  - {path: /b, upstream: app, table: {database: main, name: t, columns: [id], key: [id]}}
  - {path: '/c/{id}', table: {database: main, name: t, columns: [id], key: [id], max_limit: 5, default_limit: 10}}
";
    let lines = problems(yaml);
    let expected = [
        "t.yaml:1:24: `url` is not a PostgreSQL URL",
        "t.yaml:3:23: `table` needs `cursors` keys",
        "t.yaml:3:34: `database` is `other`, which is not declared under `postgres`",
        "t.yaml:3:47: `name` is \"x;drop\": write a table or view name",
        "t.yaml:3:71: `columns` lists `id` twice",
        "t.yaml:3:82: `key` names `nope`, which is not in `columns`",
        "t.yaml:3:104: `filters` has operator \"like\"",
        "t.yaml:4:26: `upstream` and `table` are both set",
        "t.yaml:5:12: `path` is \"/c/{id}\": a table route's path is fixed",
        "t.yaml:5:30: `table` needs `cursors` keys",
        "t.yaml:5:93: `max_limit` (5) is below `default_limit` (10)",
    ];
    assert_starts(&lines, &expected);
}

#[test]
fn database_tls_replicas_statements_and_table_policies_are_checked() {
    let cursors = "cursors: {keys: [{id: 1, secret: test-secret-test-secret-test-secret-0123}]}";
    let yaml = format!(
        "{cursors}
postgres: {{main: {{url: 'postgres://u:${{A}}@h/app?sslmode=verify-full', replica_url: 'postgres://u:${{B}}@r/app?sslmode=require', prepared_statements: unnamed}}}}
routes:
  - {{name: db, path: /db, table: {{database: main, name: t, columns: [id], key: [id], on_missing_index: warn, export: {{via: queries}}}}}}
"
    );
    let config = parse(&yaml).expect("valid");
    let main = &config.postgres["main"];
    assert_eq!(main.env_vars(), ["A", "B"]);
    assert_eq!(main.tls, Some(crate::table::config::TlsRoots::System));
    assert_eq!(main.statements, crate::table::config::Statements::Unnamed);
    assert_eq!(
        main.replica_url.as_deref(),
        Some("postgres://u:${B}@r/app?sslmode=require")
    );
    let Target::Table(table) = &config.routes[0].target else {
        panic!("a table route");
    };
    assert_eq!(
        table.on_missing_index,
        crate::table::config::MissingIndex::Warn
    );
    assert_eq!(table.via, crate::table::config::ExportVia::Queries);

    let yaml = format!(
        "{cursors}
postgres:
  a: {{url: 'postgres://h/app?sslmode=prefer', tls_ca_file: /nonexistent/ca.pem, statement_timeout: 500us}}
  b: {{url: 'postgres://h/app', replica_url: 'postgres://r/app?sslmode=require', tls_ca_file: /etc/hostname, prepared_statements: sometimes}}
  c: {{url: 'postgres://h/app?sslmode=require', tls_ca_file: /etc/hostname, statement_timeout: 597h}}
routes:
  - {{name: db, path: /db, table: {{database: a, name: t, columns: [id], key: [id], on_missing_index: ignore, export: {{via: magic, parallel: 17, chunk_bytes: 1KiB}}}}}}
"
    );
    let lines = problems(&yaml);
    let expected = [
        "t.yaml:3:12: `url` asks for sslmode=prefer, which would fall back to plaintext unseen",
        "t.yaml:3:60: `tls_ca_file` is set but the url asks for no TLS",
        "t.yaml:3:100: `statement_timeout` is 500us: keep it between 1ms and 596h (PostgreSQL",
        "t.yaml:4:45: `replica_url` asks for TLS differently from `url`",
        "t.yaml:4:94: `tls_ca_file` is set but the url asks for no TLS",
        "t.yaml:4:130: `prepared_statements` is \"sometimes\": write cached (the default) or unnamed",
        "t.yaml:5:61: `tls_ca_file` holds no PEM certificate",
        "t.yaml:5:95: `statement_timeout` is 597h: keep it between 1ms and 596h",
        "t.yaml:7:101: `on_missing_index` is \"ignore\": write refuse (the default) or warn",
        "t.yaml:7:123: `via` is \"magic\": write copy (the default) or queries",
        "t.yaml:7:140: `parallel` is 17: keep it between 1 and 16",
        "t.yaml:7:157: `chunk_bytes` is 1KiB: each of `parallel` chunks is held whole: keep it between",
    ];
    assert_starts(&lines, &expected);
}

#[test]
fn credentials_reserved_names_and_endless_durations_are_refused() {
    let yaml = "\
upstreams: {app: {url: 'http://u:s3cret@h:1'}, b: {url: 'http://h:2', connect_timeout: 400d}}
routes:
  - {name: '-', path: /a, upstream: app}
  - {name: '!method', path: /b, upstream: app}
  - {name: ' ', path: /c, upstream: app}
  - {name: '}x', path: /d, upstream: app}
";
    let lines = problems(yaml);
    let text = lines.join("\n");
    assert!(!text.contains("s3cret"), "{text}");
    for expected in [
        "t.yaml:1:24: `url` is \"http://u:",
        "credentials in an upstream's URL are never sent",
        "`connect_timeout` is 400d: write a duration of at most a year (366d)",
        "t.yaml:3:12: `name` is \"-\": `-` and names starting with `!` are pagegate's own",
        "t.yaml:4:12: `name` is \"!method\"",
        "t.yaml:5:12: `name` is \" \": write a name of visible characters",
        "t.yaml:6:12: `name` is \"}x\": a name that starts with `}` cannot tag",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
}

#[test]
fn every_tls_file_read_is_watched_and_its_change_seen() {
    let dir = std::env::temp_dir().join(format!("pagegate-tls-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let (crt, pem_key) = (
        file("c.crt", &cert.pem()),
        file("c.key", &key.serialize_pem()),
    );
    let (redis_ca, rls_ca, db_ca) = (
        file("redis-ca.pem", &cert.pem()),
        file("rls-ca.pem", &cert.pem()),
        file("db-ca.pem", &cert.pem()),
    );
    let yaml = format!(
        "redis: {{url: 'rediss://a:6379', tls: {{ca_file: '{redis_ca}', cert_file: '{crt}', key_file: '{pem_key}'}}}}
rate_limit_service: {{address: 'https://rls:8081', domain: d, tls: {{ca_file: '{rls_ca}'}}}}
postgres: {{main: {{url: 'postgres://u:p@h/app?sslmode=verify-full', tls_ca_file: '{db_ca}'}}}}
{MINIMAL}"
    );
    // A key every user may read works, and is warned about; one its owner alone reads is not.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |bits| std::fs::set_permissions(&pem_key, std::fs::Permissions::from_mode(bits));
    mode(0o644).expect("chmod");
    let open = parse(&yaml).expect("valid");
    let warned = open.warnings.join("\n");
    assert!(
        warned.contains("which every user of this machine may read or change (mode 0644)"),
        "{warned}"
    );
    mode(0o600).expect("chmod");
    let config = parse(&yaml).expect("valid");
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let paths: Vec<String> = config
        .tls_paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    for watched in [&redis_ca, &rls_ca, &db_ca, &crt, &pem_key] {
        assert!(paths.contains(watched), "{watched} not in {paths:?}");
    }
    assert!(!config.tls_changed());
    // The bytes the Redis client gets are those checked, not a second read.
    let redis = config
        .redis
        .as_ref()
        .and_then(|r| r.tls.as_ref())
        .expect("tls");
    assert_eq!(
        redis.ca.as_ref().map(|r| r.pem.as_slice()),
        Some(cert.pem().as_bytes())
    );
    for changed in [&redis_ca, &rls_ca, &db_ca] {
        std::fs::write(changed, format!("{}\n", cert.pem())).expect("rewrite");
        assert!(config.tls_changed(), "{changed} changed");
        std::fs::write(changed, cert.pem()).expect("restore");
        assert!(!config.tls_changed());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The comment above `key` (dotted for nested keys; commented-out keys too) in
/// reference.yaml, its lines joined.
fn reference_comment(key: &str) -> String {
    let lines: Vec<&str> = include_str!("../../config/reference.yaml")
        .lines()
        .collect();
    let mut at = 0;
    for (depth, part) in key.split('.').enumerate() {
        let indent = "  ".repeat(depth);
        at = (at..lines.len())
            .find(|&i| {
                let line = lines[i].strip_prefix("# ").unwrap_or(lines[i]);
                line.strip_prefix(indent.as_str())
                    .and_then(|l| l.strip_prefix(part))
                    .is_some_and(|l| l.starts_with(':'))
            })
            .unwrap_or_else(|| panic!("`{key}` is not in reference.yaml"));
        at += 1;
    }
    // Keys written one under the other share the comment above the first.
    let mut comment: Vec<&str> = lines[..at - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .skip_while(|l| !l.is_empty() && !l.starts_with('#'))
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .collect();
    comment.reverse();
    comment.join(" ")
}

#[test]
fn the_reference_file_says_which_keys_a_reload_cannot_change() {
    let reference = parse(&reference()).expect("reference.yaml");
    // Every key of ServerConfig but `tls` (its files must exist) set unlike the reference.
    let changed = parse(&format!(
        "{MINIMAL}listen: 127.0.0.1:8181\nadmin: {{listen: 127.0.0.1:9191, max_connections: 8}}\n\
         drain_delay: 1s\nshutdown_grace: 1s\nmax_connections: 100\n\
         max_connections_per_client: 3\nheader_read_timeout: 3s\nmax_head_bytes: 16KiB\n\
         send_timeout: 3s\nsend_buffer: 64KiB\nhttp2_keepalive_interval: 3s\n\
         http2_keepalive_timeout: 3s\nhttp2_idle_timeout: 3s\nhttp2_max_resets: 7\n\
         trusted_proxies: [10.1.0.0/16]\naccess_log: false\ntrace_context: anyone\n\
         traces: {{endpoint: 'http://127.0.0.1:4318/v1/traces', service_name: other}}\n"
    ))
    .expect("the changed file");
    let fixed = reference.server.differences(&changed.server);
    assert_eq!(
        fixed.len(),
        19,
        "a server key is not changed here: {fixed:?}"
    );
    for key in fixed {
        assert!(
            reference_comment(key).contains("Fixed while pagegate runs"),
            "reference.yaml should say that `{key}` is fixed while pagegate runs: {}",
            reference_comment(key)
        );
    }
}

#[test]
fn routes_that_could_never_answer_are_refused_and_a_shared_admin_address_warned_of() {
    let shared = "listen: 0.0.0.0:8080\nadmin: {listen: 127.0.0.1:8080}\n";
    let config = parse(&format!("{shared}{MINIMAL}")).expect("valid");
    let warned = config.warnings.join("\n");
    assert!(
        warned.contains(
            "t.yaml:2:17: `admin.listen` is 127.0.0.1:8080, which `listen` (0.0.0.0:8080) takes too"
        ),
        "{warned}"
    );
    let yaml = "\
upstreams: {app: {url: 'http://h:1'}}
postgres: {main: {url: 'postgres://u@h/db'}}
routes:
  - {path: '/events?active=1', upstream: app}
  - {path: /db, methods: [POST], table: {database: main, name: events, columns: [id], key: [id]}}
  - {path: /heads, methods: [HEAD], table: {database: main, name: events, columns: [id], key: [id]}}
";
    let text = problems(yaml).join("\n");
    for expected in [
        "`path` is \"/events?active=1\": a route matches paths, never a query",
        "t.yaml:5:41: `table` answers GET and HEAD requests, but this route's `methods` has neither",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
    // HEAD alone is an answer a table route gives: only the POST route is refused.
    assert_eq!(text.matches("has neither").count(), 1, "{text}");
}

#[test]
fn page_sizes_are_bounded() {
    let yaml = "upstreams: {app: {url: 'http://h:1'}}\nroutes:\n  - {path: /e, methods: [GET], upstream: app, list: {max_limit: 18446744073709551615}}\n";
    let text = problems(yaml).join("\n");
    assert!(
        text.contains("a page holds at most 1000000 items"),
        "{text}"
    );
}

#[test]
fn a_path_the_router_cannot_take_is_named_with_its_fix() {
    for path in ["/files/{*rest}/meta", "/a/{id"] {
        let yaml = format!(
            "upstreams: {{app: {{url: 'http://h:1'}}}}\nroutes:\n  - {{name: files, path: '{path}', upstream: app}}\n"
        );
        let text = problems(&yaml).join("\n");
        assert!(
            text.contains("is not a pattern routes can have") && !text.contains("overlaps"),
            "{path}: {text}"
        );
    }
}
