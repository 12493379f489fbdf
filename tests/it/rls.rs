//! `store: envoy_rls` against a real Envoy rate-limit service (Limitador's limiter behind
//! tonic, run by the test): the service decides, its answer fills the fields, descriptors
//! carry the route, the key, headers and literals, two proxies share one budget, and a dead
//! service follows `on_store_error`.

use std::time::Duration;

use crate::support::rls::RlsServer;
use crate::support::tls::Ca;
use crate::support::{Proxy, Upstream, get_with};

/// Limitador's limits: each client of route `page` 3 a minute; each tenant of the `free`
/// plan 2 a minute.
const LIMITS: &str = r#"[
  {"namespace": "fleet", "max_value": 3, "seconds": 60,
   "conditions": ["descriptors[0].route == 'page'"], "variables": ["descriptors[0].client"]},
  {"namespace": "fleet", "max_value": 2, "seconds": 60,
   "conditions": ["descriptors[0].plan == 'free'"], "variables": ["descriptors[0].tenant"]}
]"#;

fn config(rls: &RlsServer) -> String {
    format!(
        "rate_limit_service: {{address: '{}', domain: fleet, timeout: 500ms}}
admin: {{listen: 127.0.0.1:0}}
default: {{action: deny}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: page, path: /page, upstream: app, limits: {{store: envoy_rls, key: header, key_header: X-Api-Key}}}}
  - name: plans
    path: /plans
    upstream: app
    limits:
      store: envoy_rls
      descriptors: [{{key: route}}, {{key: tenant, value: 'header:x-tenant'}}, {{key: plan, value: 'literal:free'}}]
      on_store_error: closed
      concurrency: {{per_client: 5}}
",
        rls.url()
    )
}

fn key(value: &str) -> Vec<(&'static str, String)> {
    vec![("x-api-key", value.to_owned())]
}

#[tokio::test]
async fn the_service_decides_each_clients_rate_and_its_answer_fills_the_fields() {
    let rls = RlsServer::start(LIMITS).await;
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(&config(&rls), &upstream).await;
    for remaining in [2, 1, 0] {
        let got = get_with(&proxy, "/page", &key("a")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("ratelimit-policy"), Some("\"service\";q=3;w=60"));
        let state = got.header("ratelimit").expect("RateLimit");
        assert!(
            state.starts_with(&format!("\"service\";r={remaining};t=")),
            "{state}"
        );
    }
    let refused = get_with(&proxy, "/page", &key("a")).await;
    let problem = refused.problem(429);
    assert_eq!(problem["type"], "urn:pagegate:problem:rate-limited");
    let retry = refused.retry_after();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Another client has a budget of its own.
    assert_eq!(get_with(&proxy, "/page", &key("b")).await.status, 200);
    assert_eq!(
        upstream.seen().len(),
        4,
        "the refused request never reached the backend"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn descriptors_carry_headers_and_literals_and_two_proxies_share_the_budget() {
    let rls = RlsServer::start(LIMITS).await;
    let upstream = Upstream::json("[]").await;
    let yaml = config(&rls);
    let (one, two) = (
        Proxy::start(&yaml, &upstream).await,
        Proxy::start(&yaml, &upstream).await,
    );
    let tenant = |t: &str| vec![("x-tenant", t.to_owned())];
    assert_eq!(get_with(&one, "/plans", &tenant("t1")).await.status, 200);
    assert_eq!(get_with(&two, "/plans", &tenant("t1")).await.status, 200);
    // The tenant's two are spent across both proxies.
    get_with(&one, "/plans", &tenant("t1")).await.problem(429);
    get_with(&two, "/plans", &tenant("t1")).await.problem(429);
    assert_eq!(get_with(&two, "/plans", &tenant("t2")).await.status, 200);
    // Sent twice, the header is charged as each value a backend may read (first, last, both
    // joined): t1's spent budget holds whichever comes first.
    for both in [["t9", "t1"], ["t1", "t9"]] {
        let headers = both.map(|t| ("x-tenant", t.to_owned()));
        get_with(&one, "/plans", &headers).await.problem(429);
    }
    // Without the header the entry is left out: the tenant limit does not apply.
    for _ in 0..3 {
        assert_eq!(get_with(&one, "/plans", &[]).await.status, 200);
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn a_descriptor_carries_a_verified_claim() {
    use crate::support::jwt::{RSA_PUBLIC_PEM, Signer, claims};
    let rls = RlsServer::start(LIMITS).await;
    let upstream = Upstream::json("[]").await;
    let scratch = crate::support::scratch_dir("rls-claim");
    let file = scratch.join("key.pem");
    std::fs::write(&file, RSA_PUBLIC_PEM).expect("write key");
    // `claim: tenant`, spaced as a flow list writes it, names the claim `tenant`.
    let yaml = format!(
        "{}  - name: claims
    path: /claims
    upstream: app
    limits:
      store: envoy_rls
      key: {{jwt: api, claim: sub}}
      descriptors: [{{key: tenant, value: 'claim: tenant'}}, {{key: plan, value: 'literal:free'}}]
identities:
  api: {{algorithms: [RS256], issuer: 'https://issuer.test/', audience: orders, public_key_file: '{}'}}
",
        config(&rls),
        file.display()
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let rsa = Signer::rsa();
    let as_user = |sub: &str, tenant: &str| {
        let token = rsa.sign(
            None,
            &claims(&serde_json::json!({"sub": sub, "tenant": tenant})),
        );
        vec![("authorization", format!("Bearer {token}"))]
    };
    // Two users of tenant t1 share its two a minute; t2 has its own.
    assert_eq!(
        get_with(&proxy, "/claims", &as_user("a", "t1"))
            .await
            .status,
        200
    );
    assert_eq!(
        get_with(&proxy, "/claims", &as_user("b", "t1"))
            .await
            .status,
        200
    );
    get_with(&proxy, "/claims", &as_user("c", "t1"))
        .await
        .problem(429);
    assert_eq!(
        get_with(&proxy, "/claims", &as_user("a", "t2"))
            .await
            .status,
        200
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_dead_service_refuses_when_closed_and_falls_back_when_open() {
    let rls = RlsServer::start(LIMITS).await;
    let upstream = Upstream::json("[]").await;
    let yaml = format!(
        "{}  - {{name: open, path: /open, upstream: app, limits: {{store: envoy_rls, on_store_error: open, rate: {{per_client: {{requests: 1, per: 1h}}}}}}}}\n",
        config(&rls)
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    assert_eq!(get_with(&proxy, "/plans", &[]).await.status, 200);
    rls.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = get_with(&proxy, "/plans", &[]).await;
    assert_eq!(
        refused.problem(503)["type"],
        "urn:pagegate:problem:limits-unavailable"
    );
    // `open`: this process's own rate takes over (one an hour).
    assert_eq!(get_with(&proxy, "/open", &[]).await.status, 200);
    get_with(&proxy, "/open", &[]).await.problem(429);
    crate::support::assert_metrics(
        &proxy.metrics_text().await,
        &[
            "pagegate_limit_decisions_total{route=\"plans\",limit=\"rate_limit_service\",decision=\"refused\",tenant_class=\"default\"} 1",
            "pagegate_limit_decisions_total{route=\"open\",limit=\"rate_limit_service\",decision=\"fallback\",tenant_class=\"default\"} 2",
        ],
    );
    proxy.stop().await;
}

#[tokio::test]
async fn over_tls_the_service_is_verified_and_shown_a_client_certificate() {
    let dir = crate::support::scratch_dir("rls-tls");
    let (ca, clients, stranger) = (Ca::new("rls ca"), Ca::new("clients"), Ca::new("stranger"));
    let server = ca.issue(&["127.0.0.1"], &dir, "rls");
    let client = clients.issue(&["pagegate"], &dir, "client");
    let rls = RlsServer::start_tls(LIMITS, &server, Some(&clients)).await;
    let upstream = Upstream::json("[]").await;
    let with_tls = |ca: &Ca, certificate: bool| {
        let ca_file = ca.write(&dir, "ca.crt").display().to_string();
        let shown = if certificate {
            client.client_yaml()
        } else {
            String::new()
        };
        config(&rls).replacen(
            "timeout: 500ms}",
            &format!("timeout: 500ms, tls: {{ca_file: '{ca_file}'{shown}}}}}"),
            1,
        )
    };
    let proxy = Proxy::start(&with_tls(&ca, true), &upstream).await;
    for _ in 0..3 {
        assert_eq!(get_with(&proxy, "/page", &key("a")).await.status, 200);
    }
    // The service decided, over TLS: the client's fourth is refused.
    get_with(&proxy, "/page", &key("a")).await.problem(429);
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(
            "pagegate_tls_certificate_expiry_timestamp_seconds{name=\"rate_limit_service\"}"
        ),
        "the client certificate's expiry is watched: {metrics}"
    );
    proxy.stop().await;
    // A service whose certificate does not verify, or that finds no client certificate,
    // gives no verdict: `closed` refuses.
    for (ca, certificate) in [(&stranger, true), (&ca, false)] {
        let proxy = Proxy::start(&with_tls(ca, certificate), &upstream).await;
        let refused = get_with(&proxy, "/plans", &[]).await;
        assert_eq!(
            refused.problem(503)["type"],
            "urn:pagegate:problem:limits-unavailable"
        );
        proxy.stop().await;
    }
}

/// A "service" at `addr` that accepts connections and then never answers (`junk: None`), or
/// answers every connection with `junk` and closes it.
async fn hostile_service(
    junk: Option<&'static [u8]>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            match junk {
                Some(junk) => {
                    let _ = stream.write_all(junk).await;
                }
                None => held.push(stream),
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_service_that_never_answers_or_answers_junk_gives_no_verdict() {
    let upstream = Upstream::json("[]").await;
    for junk in [
        None,
        Some(&b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..]),
    ] {
        let (addr, task) = hostile_service(junk).await;
        let yaml = format!(
            "rate_limit_service: {{address: 'http://{addr}', domain: fleet, timeout: 100ms}}
upstreams: {{app: {{url: '{{upstream}}'}}}}
routes:
  - {{name: closed, path: /closed, upstream: app, limits: {{store: envoy_rls, on_store_error: closed}}}}
  - {{name: open, path: /open, upstream: app, limits: {{store: envoy_rls, rate: {{per_client: {{requests: 100, per: 1s}}}}}}}}
"
        );
        let proxy = Proxy::start(&yaml, &upstream).await;
        let started = std::time::Instant::now();
        let refused = get_with(&proxy, "/closed", &[]).await;
        assert_eq!(
            refused.problem(503)["type"],
            "urn:pagegate:problem:limits-unavailable",
            "{junk:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "bounded by the timeout, not held: {:?}",
            started.elapsed()
        );
        assert_eq!(get_with(&proxy, "/open", &[]).await.status, 200, "{junk:?}");
        proxy.stop().await;
        task.abort();
    }
    assert_eq!(
        upstream.seen().len(),
        2,
        "only the open route's requests went on"
    );
}

#[test]
fn rate_limit_service_mistakes_are_located_with_their_fix() {
    let service = "rate_limit_service: {address: 'http://127.0.0.1:8081', domain: fleet}\n";
    let cases = [
        (
            "",
            "{store: envoy_rls}",
            "no top-level `rate_limit_service`",
        ),
        (
            service,
            "{descriptors: [{key: route}], rate: {per_client: {requests: 1, per: 1s}}}",
            "add `store: envoy_rls`",
        ),
        (
            "rate_limit_service: {address: 'http://rls:8081', domain: fleet, tls: {server_name: rls}}\n",
            "{store: envoy_rls}",
            "https://",
        ),
        (
            "rate_limit_service: {address: 'rls:8081', domain: fleet}\n",
            "{store: envoy_rls}",
            "is not http://HOST:PORT",
        ),
        (
            service,
            "{store: envoy_rls, descriptors: [{key: tenant}]}",
            "say where \"tenant\"'s value comes from",
        ),
        (
            service,
            "{store: envoy_rls, descriptors: [{key: t, value: 'cookie:x'}]}",
            "is not a value source",
        ),
        (
            service,
            "{store: envoy_rls, descriptors: [{key: t, value: 'claim:sub'}]}",
            "key: {jwt: NAME",
        ),
        (
            service,
            "{store: envoy_rls, on_store_error: open, on_redis_error: open}",
            "keep on_store_error only",
        ),
        (
            service,
            "{store: envoy_rls, descriptors: [{key: t, value: 'header:Authorization'}]}",
            "credential",
        ),
    ];
    for (top, limits, fix) in cases {
        let yaml = format!(
            "{top}upstreams: {{app: {{url: 'http://127.0.0.1:9'}}}}\nroutes:\n  - name: r\n    limits: {limits}\n    path: /r\n    upstream: app\n"
        );
        let text = match pagegate::Config::parse("t.yaml", &yaml) {
            Ok(_) => panic!("expected a problem for {top}{limits}"),
            Err(e) => e.to_string(),
        };
        assert!(
            text.contains("t.yaml:") && text.contains(fix),
            "{top}{limits}:\n{text}\nshould say {fix}"
        );
    }
}
