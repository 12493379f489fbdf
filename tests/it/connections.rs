//! At `max_connections` no client is closed without an answer: a burst of newcomers never
//! evicts one another (each is served, or answered 503 `overloaded` after waiting 2 s), and a
//! connection that trickles its head is evicted first and closed at once (real sockets).

use std::time::{Duration, Instant};

use crate::support::{Proxy, Upstream, json_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one GET on a new connection and reads until the connection closes: the answer's
/// status line, or `None` when it was closed without one.
async fn one_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return None;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer));
    read.await.expect("closed within 20 s").ok()?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.starts_with("HTTP/1.1 ").then_some(text)
}

#[tokio::test]
async fn a_burst_of_newcomers_at_max_connections_is_answered_every_one() {
    // /busy holds its connection for 3 s, longer than a newcomer waits.
    let upstream = Upstream::start(|req| async move {
        if req.uri().path() == "/busy" {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        json_response("{}")
    })
    .await;
    let yaml = "
max_connections: 100
admin: {listen: 127.0.0.1:0}
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let addr = proxy.addr;
    let busy: Vec<_> = (0..100)
        .map(|_| tokio::spawn(one_get(addr, "/busy")))
        .collect();
    while upstream.seen().len() < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let newcomers: Vec<_> = (0..300)
        .map(|_| tokio::spawn(one_get(addr, "/new")))
        .collect();
    let mut refused = 0;
    for task in newcomers {
        let answer = task.await.expect("task").expect("answered, not closed");
        if answer.starts_with("HTTP/1.1 503") {
            assert!(answer.contains("retry-after: 1\r\n"), "{answer}");
            assert!(
                answer.contains("urn:pagegate:problem:overloaded"),
                "{answer}"
            );
            refused += 1;
        } else {
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
    }
    for task in busy {
        let answer = task.await.expect("task").expect("answered");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "busy requests are never cut: {answer}"
        );
    }
    assert!(
        refused > 0,
        "with every slot busy for 3 s, some waited out the 2 s"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered in {:?}",
        started.elapsed()
    );
    let text = proxy.metrics_text().await;
    let line = format!("pagegate_protections_total{{reason=\"max_connections\"}} {refused}\n");
    assert!(text.contains(&line), "{line} missing from:\n{text}");
    for reason in ["evicted_idle", "evicted_silent", "evicted_slow_head"] {
        let line = format!("pagegate_protections_total{{reason=\"{reason}\"}} 0\n");
        assert!(text.contains(&line), "nobody was evicted:\n{text}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_trickled_head_is_evicted_first_and_closed_at_once() {
    let upstream = Upstream::start(|req| async move {
        if req.uri().path() == "/busy" {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        json_response("{}")
    })
    .await;
    // Timeouts far longer than the test: only eviction can free a slot.
    let yaml = "
max_connections: 3
header_read_timeout: 30s
admin: {listen: 127.0.0.1:0}
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let addr = proxy.addr;
    let busy = tokio::spawn(one_get(addr, "/busy"));
    // A keep-alive connection between requests.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.expect("answered");
    // A head trickled a byte every 100 ms.
    let mut trickle = TcpStream::connect(addr).await.expect("connect");
    let head_bytes =
        b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for byte in &head_bytes[..15] {
        trickle.write_all(&[*byte]).await.expect("trickle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Now a newcomer: the trickled head (1.5 s since its first byte) goes, not the idle one.
    let started = Instant::now();
    let answer = one_get(addr, "/new").await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(1), trickle.read_to_end(&mut rest));
    let _ = closed.await.expect("the trickled head was closed at once");
    assert!(
        rest.is_empty(),
        "closed without an answer to a head never finished"
    );
    let text = proxy.metrics_text().await;
    assert!(
        text.contains("pagegate_protections_total{reason=\"evicted_slow_head\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("pagegate_protections_total{reason=\"evicted_idle\"} 0\n"),
        "the idle one stayed:\n{text}"
    );
    drop(idle);
    busy.abort();
    proxy.stop().await;
}

#[tokio::test]
async fn a_newcomer_whose_head_arrives_at_a_normal_pace_is_never_evicted() {
    let upstream = Upstream::start(|_| async { json_response("{}") }).await;
    let yaml = "
max_connections: 2
header_read_timeout: 30s
admin: {listen: 127.0.0.1:0}
default: {action: pass, upstream: app}
upstreams: {app: {url: '{upstream}'}}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let addr = proxy.addr;
    // Two clients writing their heads in pieces 200 ms apart (under a second in all), and a
    // third client arriving meanwhile: the third waits rather than cutting them.
    let writer = |pause| async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut whole = Instant::now();
        for piece in [
            "GET /a HTT",
            "P/1.1\r\nHost: x\r\n",
            "Connection: close\r\n\r\n",
        ] {
            stream.write_all(piece.as_bytes()).await.expect("write");
            whole = Instant::now();
            tokio::time::sleep(pause).await;
        }
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        // When the head was whole: its answer, and its slot's release, come after.
        (String::from_utf8_lossy(&answer).into_owned(), whole)
    };
    let first = tokio::spawn(writer(Duration::from_millis(200)));
    let second = tokio::spawn(writer(Duration::from_millis(200)));
    // Both writers hold their connection before the third arrives.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !proxy
        .metrics_text()
        .await
        .contains("pagegate_open_connections 2\n")
    {
        assert!(Instant::now() < deadline, "the writers never connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let third = tokio::spawn(async move {
        let answer = one_get(addr, "/c").await;
        (answer, Instant::now())
    });
    let mut served = Vec::new();
    for task in [first, second] {
        let (answer, at) = task.await.expect("task");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        served.push(at);
    }
    let (answer, at) = third.await.expect("task");
    let answer = answer.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The third waited for a writer's head to be whole rather than cutting one.
    assert!(
        served.iter().any(|&whole| whole <= at),
        "the third was served first"
    );
    let text = proxy.metrics_text().await;
    for reason in ["evicted_slow_head", "evicted_silent", "evicted_idle"] {
        let line = format!("pagegate_protections_total{{reason=\"{reason}\"}} 0\n");
        assert!(text.contains(&line), "{line} missing:\n{text}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_flood_of_bad_heads_is_counted_in_full_and_logged_a_few_lines_a_second() {
    const HEADS: u64 = 120;
    let (captured, _guard) = crate::support::logs::capture();
    let upstream = Upstream::json("{}").await;
    let yaml = "
admin: {listen: 127.0.0.1:0}
upstreams: {app: {url: '{upstream}'}}
default: {action: pass, upstream: app}
";
    let proxy = Proxy::start(yaml, &upstream).await;
    let bad_head = async || {
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        stream
            .write_all(b"NOT HTTP AT ALL\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        assert!(answer.starts_with(b"HTTP/1.1 400"), "{answer:?}");
    };
    // Enough that even a slow machine sends them faster than the throttle lets lines out.
    let started = Instant::now();
    for _ in 0..HEADS {
        bad_head().await;
    }
    let took = started.elapsed();
    let lines = |captured: &crate::support::logs::Captured| captured.events("request head refused");
    // The count and the line follow the connection's close: wait for them.
    for _ in 0..100 {
        if proxy.protections("head_malformed").await == HEADS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        proxy.protections("head_malformed").await,
        HEADS,
        "every one counted"
    );
    // A burst of 10 lines, then one a tenth of a second.
    let written = lines(&captured).len();
    let most = 10 + usize::try_from(took.as_millis() / 100).expect("small") + 1;
    assert!(
        written >= 1 && written <= most && written < 120,
        "{written} lines in {took:?}"
    );

    // The next line written tells how many were left out before it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    bad_head().await;
    let mut events = lines(&captured);
    for _ in 0..100 {
        if events.len() > written {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        events = lines(&captured);
    }
    assert_eq!(events.len(), written + 1);
    let suppressed: u64 = events
        .iter()
        .map(|e| e["suppressed"].as_u64().expect("suppressed"))
        .sum();
    assert_eq!(
        suppressed + events.len() as u64,
        HEADS + 1,
        "each head a line or a count: {events:?}"
    );
    proxy.stop().await;
}
