//! The admin listener through a real pagegate: probes, metrics, the redacted config, who may
//! use the verbs, reloads from the file (valid and not), and a drain.

use std::time::Duration;

use crate::support::{Proxy, Upstream, client, client_from, full, get, scratch_dir, send_with};
use bytes::Bytes;
use pagegate::{Config, Server, Source};

const YAML: &str = "
admin: {listen: 127.0.0.1:0}
upstreams:
  app: {url: '{upstream}'}
  gone: {url: 'http://127.0.0.1:9'}
cursors: {keys: [{id: 1, secret: 0123456789abcdef0123456789abcdef}]}
routes:
  - {name: events, path: /events, upstream: app}
";

fn admin(proxy: &Proxy, path: &str) -> String {
    format!("http://{}{path}", proxy.admin.expect("admin listener"))
}

async fn call(from: [u8; 4], method: &str, url: &str, body: &'static str) -> crate::support::Got {
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(full(Bytes::from_static(body.as_bytes())))
        .expect("request");
    send_with(&client_from(from), request).await
}

#[tokio::test]
async fn probes_say_what_answers_and_only_required_names_fail_readiness() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(YAML, &upstream).await;
    assert_eq!(get(&admin(&proxy, "/live")).await.status, 200);
    let ready = get(&admin(&proxy, "/ready")).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let body = ready.json();
    assert_eq!(body["status"], "ready");
    let checks = body["checks"].as_array().expect("checks");
    let up = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["up"].clone())
    };
    assert_eq!(up("app"), Some(serde_json::Value::Bool(true)), "{body}");
    assert_eq!(up("gone"), Some(serde_json::Value::Bool(false)), "{body}");
    let metrics = proxy.metrics_text().await;
    for line in [
        "pagegate_backend_up{kind=\"upstream\",name=\"app\"} 1",
        "pagegate_backend_up{kind=\"upstream\",name=\"gone\"} 0",
        "pagegate_ready 1",
        "pagegate_build_info{version=",
        "pagegate_config_info{hash=",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    // A reload that drops `gone` drops its series and its check, once probed again.
    let without = YAML.replace("  gone: {url: 'http://127.0.0.1:9'}\n", "");
    proxy
        .reload(&without, &upstream.url())
        .await
        .expect("reload");
    let ready = get(&admin(&proxy, "/ready")).await.json();
    assert!(!ready.to_string().contains("gone"), "{ready}");
    let metrics = proxy.metrics_text().await;
    assert!(!metrics.contains("name=\"gone\""), "{metrics}");
    assert!(metrics.contains("name=\"app\"} 1"), "{metrics}");
    proxy.stop().await;

    let required = YAML.replace(
        "admin: {listen: 127.0.0.1:0}",
        "admin: {listen: 127.0.0.1:0, ready_requires: [gone]}",
    );
    let proxy = Proxy::start(&required, &upstream).await;
    let ready = get(&admin(&proxy, "/ready")).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let body = ready.json();
    assert_eq!(body["status"], "not_ready");
    let gone = body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "gone")
        .expect("gone's check");
    assert_eq!(
        (&gone["up"], &gone["required"]),
        (&false.into(), &true.into()),
        "{body}"
    );
    assert!(
        gone["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(proxy.metrics_text().await.contains("pagegate_ready 0"));
    // Traffic is served all the same: readiness is the orchestrator's business.
    assert_eq!(get(&proxy.url("/events")).await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn the_config_is_shown_without_its_secrets() {
    let upstream = Upstream::json("[]").await;
    let yaml = format!(
        "{YAML}postgres:\n  main: {{url: 'postgres://app:hunter2@127.0.0.1:9/app', pool_size: 1}}\n"
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let shown = get(&admin(&proxy, "/config")).await;
    assert_eq!(shown.status, 200);
    let text = shown.text();
    assert!(!text.contains("0123456789abcdef"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("postgres://app:[redacted]@127.0.0.1:9/app"),
        "{text}"
    );
    let hash = shown.json()["hash"].as_str().expect("hash").to_owned();
    assert_eq!(hash, proxy.handle.generation().config().hash());
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(&format!("pagegate_config_info{{hash=\"{hash}\"}} 1")),
        "{metrics}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn verbs_answer_only_allowed_peers() {
    let upstream = Upstream::json("[]").await;
    let proxy = Proxy::start(YAML, &upstream).await;
    for (method, path) in [
        ("POST", "/reload"),
        ("POST", "/drain"),
        ("PUT", "/log-level"),
    ] {
        let refused = call([127, 0, 0, 2], method, &admin(&proxy, path), "debug").await;
        let problem = refused.problem(403);
        assert_eq!(problem["type"], "urn:pagegate:problem:admin-forbidden");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("admin.allow")),
            "{problem}"
        );
    }
    assert!(!proxy.handle.draining(), "a refused drain drains nothing");
    // From loopback: a server started from a config given in code has no file to reload.
    let reload = call([127, 0, 0, 1], "POST", &admin(&proxy, "/reload"), "").await;
    assert_eq!(
        reload.problem(409)["type"],
        "urn:pagegate:problem:reload-refused"
    );
    let wrong = call([127, 0, 0, 1], "GET", &admin(&proxy, "/reload"), "").await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("POST"));
    let level = call(
        [127, 0, 0, 1],
        "PUT",
        &admin(&proxy, "/log-level"),
        "info,=bad=",
    )
    .await;
    assert_eq!(
        level.problem(400)["type"],
        "urn:pagegate:problem:invalid-log-level"
    );
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains("pagegate_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );

    let allowed = YAML.replace(
        "admin: {listen: 127.0.0.1:0}",
        "admin: {listen: 127.0.0.1:0, allow: [127.0.0.2]}",
    );
    let proxy2 = Proxy::start(&allowed, &upstream).await;
    let drain = call([127, 0, 0, 2], "POST", &admin(&proxy2, "/drain"), "").await;
    assert_eq!(drain.status, 202, "{}", drain.text());
    assert!(proxy2.handle.draining());
    proxy.stop().await;
    proxy2.stop().await;
}

#[tokio::test]
async fn an_ipv4_peer_of_a_dual_stack_admin_listener_is_seen_as_ipv4() {
    // On `[::]`, a connection from 127.0.0.1 arrives as ::ffff:127.0.0.1, which the default
    // admin.allow (127.0.0.1/32, ::1/128) must still recognize.
    let upstream = Upstream::json("[]").await;
    let dual = YAML.replace("admin: {listen: 127.0.0.1:0}", "admin: {listen: '[::]:0'}");
    let proxy = Proxy::start(&dual, &upstream).await;
    let port = proxy.admin.expect("admin").port();
    let drain = call(
        [127, 0, 0, 1],
        "POST",
        &format!("http://127.0.0.1:{port}/drain"),
        "",
    )
    .await;
    assert_eq!(drain.status, 202, "{}", drain.text());
    proxy.stop().await;
}

/// A server run from a file, as `pagegate run` does.
async fn from_file(path: &std::path::Path) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let source = Source::new(path.to_owned(), Box::new(|_: &mut Config| {}));
    let config = source.load().expect("valid file");
    let server = Server::bind(config)
        .await
        .expect("bind")
        .with_source(source);
    let addrs = (
        server.local_addr().expect("addr"),
        server.admin_addr().expect("admin"),
    );
    tokio::spawn(server.run(std::future::pending()));
    addrs
}

#[tokio::test]
async fn reload_reads_the_file_again_and_keeps_the_running_config_when_it_is_wrong() {
    let upstream = Upstream::json("[1,2,3,4,5]").await;
    let scratch = scratch_dir("reload");
    let path = scratch.join("pagegate.yaml");
    let file = |limit: u32| {
        format!(
            "listen: 127.0.0.1:0\nadmin: {{listen: 127.0.0.1:0}}\nupstreams: {{app: {{url: '{}'}}}}\nroutes:\n  - {{name: events, path: /events, upstream: app, list: {{default_limit: {limit}, max_limit: 100}}}}\n",
            upstream.url()
        )
    };
    std::fs::write(&path, file(2)).expect("write");
    let (proxy, admin) = from_file(&path).await;
    let limit = || async {
        let seen = upstream.last();
        seen.query().to_owned()
    };
    get(&format!("http://{proxy}/events")).await;
    assert!(limit().await.contains("limit=2"), "{}", limit().await);

    std::fs::write(&path, file(3)).expect("write");
    let reloaded = call(
        [127, 0, 0, 1],
        "POST",
        &format!("http://{admin}/reload"),
        "",
    )
    .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    get(&format!("http://{proxy}/events")).await;
    assert!(limit().await.contains("limit=3"), "{}", limit().await);

    // A wrong file: refused with check's lines, and the running config stays.
    std::fs::write(&path, file(3).replace("max_limit: 100", "max_limit: lots")).expect("write");
    let refused = call(
        [127, 0, 0, 1],
        "POST",
        &format!("http://{admin}/reload"),
        "",
    )
    .await;
    let problem = refused.problem(409);
    let detail = problem["detail"].as_str().expect("detail");
    assert!(detail.contains("pagegate.yaml:5:"), "{detail}");
    get(&format!("http://{proxy}/events")).await;
    assert!(limit().await.contains("limit=3"), "{}", limit().await);
    let metrics = get(&format!("http://{admin}/metrics")).await.text();
    for line in [
        "pagegate_reloads_total{result=\"ok\"} 1",
        "pagegate_reloads_total{result=\"failed\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

#[tokio::test]
async fn a_drain_turns_readiness_off_while_traffic_is_served_then_closes() {
    let upstream = Upstream::json("[]").await;
    let yaml = format!("drain_delay: 1s\n{YAML}");
    let proxy = Proxy::start(&yaml, &upstream).await;
    let client = client();
    proxy.handle.drain();
    let ready = get(&admin(&proxy, "/ready")).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["status"], "draining");
    // During drain_delay, new connections are still served.
    let served = send_with(
        &client,
        http::Request::get(proxy.url("/events"))
            .body(full(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(served.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused = tokio::net::TcpStream::connect(proxy.addr).await;
    assert!(refused.is_err(), "the listener closed after drain_delay");
    proxy.stop().await;
}

#[tokio::test]
async fn metrics_after_scripted_traffic_count_durations_bytes_and_upstream_failures() {
    let (captured, _guard) = crate::support::logs::capture();
    let upstream = Upstream::json("[1,2,3]").await;
    let yaml = "
admin: {listen: 127.0.0.1:0}
upstreams:
  app: {url: '{upstream}'}
  gone: {url: 'http://127.0.0.1:9'}
routes:
  - {name: events, path: /events, upstream: app}
  - {name: down, path: /down, upstream: gone}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    for _ in 0..3 {
        assert_eq!(get(&proxy.url("/events")).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&proxy.url("/down")).await.status, 502);
    }
    let metrics = proxy.metrics_text().await;
    for line in [
        "pagegate_request_duration_seconds_count{route=\"events\",class=\"2xx\"} 3",
        "pagegate_request_duration_seconds_count{route=\"down\",class=\"5xx\"} 2",
        "pagegate_request_duration_seconds_bucket{le=\"10.0\",route=\"events\",class=\"2xx\"} 3",
        "pagegate_response_bytes_total{route=\"events\"} 21",
        "pagegate_upstream_first_byte_seconds_count{upstream=\"app\"} 3",
        "pagegate_upstream_errors_total{upstream=\"gone\",cause=\"connect_refused\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    // A 502's log line says why and where.
    let failed = captured.events("upstream request failed");
    let first = failed.first().expect("a log line for the 502");
    assert_eq!(first["cause"], "connect_refused", "{first}");
    assert_eq!(first["address"], "127.0.0.1:9", "{first}");
    proxy.stop().await;
}

#[tokio::test]
async fn silent_connections_cannot_keep_the_probes_out() {
    use tokio::io::AsyncReadExt;
    let upstream = Upstream::json("[]").await;
    let yaml = YAML.replace(
        "admin: {listen: 127.0.0.1:0}",
        "admin: {listen: 127.0.0.1:0, max_connections: 4}\nheader_read_timeout: 1s",
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let addr = proxy.admin.expect("admin listener");
    // One peer (not in admin.allow) opens every slot's worth of connections and sends
    // nothing: it is given its share, a quarter.
    let mut silent = Vec::new();
    for _ in 0..4 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.3:0".parse().expect("addr"))
            .expect("bind");
        silent.push(socket.connect(addr).await.expect("connect"));
    }
    // Another address (a kubelet's) still gets its probe answered at once.
    let live = call([127, 0, 0, 2], "GET", &admin(&proxy, "/live"), "").await;
    assert_eq!(live.status, 200);
    // The silent ones are closed after header_read_timeout; the peer is served again.
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent[0].read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
    assert_eq!(get(&admin(&proxy, "/live")).await.status, 200);
    proxy.stop().await;
}

#[tokio::test]
async fn peers_that_fill_every_slot_cannot_keep_a_probe_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::json("[]").await;
    let yaml = YAML.replace(
        "admin: {listen: 127.0.0.1:0}",
        "admin: {listen: 127.0.0.1:0, max_connections: 4}",
    );
    let proxy = Proxy::start(&yaml, &upstream).await;
    let addr = proxy.admin.expect("admin listener");
    // Four peers each hold their share, one keep-alive connection, busy now and then.
    let mut held = Vec::new();
    for n in 3..7 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, n], 0)))
            .expect("bind");
        let mut stream = socket.connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /live HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let mut answer = [0u8; 512];
        let n = stream.read(&mut answer).await.expect("read");
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    // While all are fresh, a newcomer is closed at once.
    let mut newcomer = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(2), newcomer.read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
    // Idle a second, the longest-idle one gives its slot to a kubelet's probe.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let live = call([127, 0, 0, 2], "GET", &admin(&proxy, "/live"), "").await;
    assert_eq!(live.status, 200);
    let first = tokio::time::timeout(Duration::from_secs(2), held[0].read(&mut byte)).await;
    assert!(
        matches!(first, Ok(Ok(0) | Err(_))),
        "the idlest closed: {first:?}"
    );
    proxy.stop().await;
}
