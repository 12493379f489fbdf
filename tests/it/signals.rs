//! Signals and file changes to a real `pagegate run` process: SIGHUP reloads the file (and never
//! stops the process, even when the file is wrong); so does a change of the file, made as
//! Kubernetes updates a ConfigMap (a `..data` symlink swapped); SIGTERM drains (readiness off
//! while traffic is served, a long stream finished within the grace, new connections refused)
//! and exits 0.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::bodies::slow_rows;
use crate::support::process::Running;
use crate::support::redis::free_port;
use crate::support::{Scratch, Upstream, get, scratch_dir};
use http_body_util::BodyExt;

const CURSORS: &str = "cursors: {keys: [{id: 1, secret: 0123456789abcdef0123456789abcdef}]}";

fn config(proxy: u16, admin: u16, upstream: &str, limit: u32, drain: &str) -> String {
    format!(
        "listen: 127.0.0.1:{proxy}\nadmin: {{listen: 127.0.0.1:{admin}}}\ndrain_delay: {drain}\n\
         upstreams: {{app: {{url: '{upstream}'}}}}\nroutes:\n  - {{name: events, path: /events, \
         upstream: app, list: {{default_limit: {limit}, max_limit: 100}}}}\n  - {{name: export, \
         path: /export, upstream: app}}\n"
    )
}

#[tokio::test]
async fn sighup_reloads_the_file_and_a_wrong_file_changes_nothing() {
    let upstream = Upstream::json("[]").await;
    let scratch = scratch_dir("sighup");
    let path = scratch.join("pagegate.yaml");
    let (proxy, admin) = (free_port(), free_port());
    std::fs::write(&path, config(proxy, admin, &upstream.url(), 2, "0s")).expect("write");
    // Not watched, so only the signal reloads.
    let mut running = Running::start(&path, admin, &["--no-watch"]).await;
    let first = hash(&running).await;

    std::fs::write(&path, config(proxy, admin, &upstream.url(), 3, "0s")).expect("write");
    running.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while hash(&running).await == first {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    get(&format!("http://127.0.0.1:{proxy}/events")).await;
    assert!(
        upstream.last().query().contains("limit=3"),
        "{}",
        upstream.last().query()
    );
    let second = hash(&running).await;

    std::fs::write(&path, "routes: [oops").expect("write");
    running.signal("HUP");
    let failed = "pagegate_reloads_total{result=\"failed\"} 1";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !running.admin("/metrics").await.text().contains(failed) {
        assert!(Instant::now() < deadline, "the wrong file was not refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running.alive(), "SIGHUP never stops the process");
    assert_eq!(hash(&running).await, second);
}

#[tokio::test]
async fn a_file_written_in_place_reloads_and_listen_given_on_the_command_line_holds() {
    let upstream = Upstream::json("[]").await;
    let scratch = scratch_dir("in-place");
    let path = scratch.join("pagegate.yaml");
    // The file names a port; `--listen` moves it, for the start and for every reload.
    let (file_port, proxy, admin) = (free_port(), free_port(), free_port());
    std::fs::write(&path, config(file_port, admin, &upstream.url(), 2, "0s")).expect("write");
    let listen = format!("127.0.0.1:{proxy}");
    let running = Running::start(&path, admin, &["--listen", &listen]).await;
    let first = hash(&running).await;
    // As some editors save: the file truncated and written again, no rename.
    std::fs::write(&path, config(file_port, admin, &upstream.url(), 3, "0s")).expect("write");
    let deadline = Instant::now() + Duration::from_secs(5);
    while hash(&running).await == first {
        assert!(Instant::now() < deadline, "the change did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    get(&format!("http://127.0.0.1:{proxy}/events")).await;
    assert!(upstream.last().query().contains("limit=3"));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", file_port)).is_err(),
        "the file's port stays closed"
    );
}

#[tokio::test]
async fn a_second_sigterm_exits_at_once_and_says_so_on_stderr() {
    let upstream = Upstream::json("[]").await;
    let dir = scratch_dir("second-signal");
    let path = dir.join("pagegate.yaml");
    let (proxy, admin) = (free_port(), free_port());
    // A drain that would last 30 s.
    std::fs::write(&path, config(proxy, admin, &upstream.url(), 2, "30s")).expect("write");
    let log = dir.join("stderr.log");
    let stderr = std::fs::File::create(&log).expect("log file");
    let mut running = Running::spawn_to(&path, admin, &[], stderr.into());
    running.started().await;
    running.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while running.admin("/ready").await.status != 503 {
        assert!(Instant::now() < deadline, "the first SIGTERM did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.signal("TERM");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = running.child.try_wait().expect("wait") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(1));
    let text = std::fs::read_to_string(&log).expect("read log");
    assert!(
        text.contains("pagegate: second SIGTERM: exiting at once"),
        "{text}"
    );
}

/// `pagegate reload --admin 127.0.0.1:PORT`: its exit code and stderr.
async fn reload_command(admin: u16) -> (i32, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pagegate"))
            .args(["reload", "--admin", &format!("127.0.0.1:{admin}")])
            .env_remove("PAGEGATE_ADMIN_LISTEN")
            .output()
    })
    .await
    .expect("task")
    .expect("run pagegate reload");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_reload_command_says_whether_the_file_was_taken() {
    let upstream = Upstream::json("[]").await;
    let scratch = scratch_dir("reload-command");
    let path = scratch.join("pagegate.yaml");
    let (proxy, admin) = (free_port(), free_port());
    std::fs::write(&path, config(proxy, admin, &upstream.url(), 2, "0s")).expect("write");
    let running = Running::start(&path, admin, &["--no-watch"]).await;
    let first = hash(&running).await;
    std::fs::write(&path, config(proxy, admin, &upstream.url(), 3, "0s")).expect("write");
    let (code, stderr) = reload_command(admin).await;
    assert_eq!(code, 0, "{stderr}");
    assert_ne!(
        hash(&running).await,
        first,
        "reloaded when the command returned"
    );
    // A refused file: exit 1 with the reason, as systemd's `ExecReload` reports it.
    std::fs::write(&path, "routes: [oops").expect("write");
    let (code, stderr) = reload_command(admin).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("/reload answered 409"), "{stderr}");
    assert!(
        stderr.contains("pagegate.yaml:1:"),
        "the file's line: {stderr}"
    );
    // Nothing listens: exit 1, said so.
    let (code, stderr) = reload_command(free_port()).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot reach"), "{stderr}");
}

#[tokio::test]
async fn a_file_written_in_pieces_is_read_once_whole() {
    let upstream = Upstream::json("[]").await;
    let scratch = scratch_dir("in-pieces");
    let path = scratch.join("pagegate.yaml");
    let (proxy, admin) = (free_port(), free_port());
    std::fs::write(&path, config(proxy, admin, &upstream.url(), 2, "0s")).expect("write");
    let running = Running::start(&path, admin, &[]).await;
    let first = hash(&running).await;
    // A slow writer (scp, a config tool): four pieces 100 ms apart, each an event, no piece
    // but the last a whole config.
    let text = config(proxy, admin, &upstream.url(), 3, "0s");
    let mut file = std::fs::File::create(&path).expect("truncate");
    for piece in text.as_bytes().chunks(text.len().div_ceil(4)) {
        std::io::Write::write_all(&mut file, piece).expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(file);
    let deadline = Instant::now() + Duration::from_secs(5);
    while hash(&running).await == first {
        assert!(Instant::now() < deadline, "the change did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = running.admin("/metrics").await.text();
    crate::support::assert_metrics(&metrics, &["pagegate_reloads_total{result=\"ok\"} 1"]);
    assert!(
        !metrics.lines().any(|l| {
            l.starts_with("pagegate_reloads_total{result=\"failed\"}") && !l.ends_with(" 0")
        }),
        "a piece was read as a config:\n{metrics}"
    );
}

/// The running config's hash, from `GET /config`.
async fn hash(running: &Running) -> Option<String> {
    running.admin("/config").await.json()["hash"]
        .as_str()
        .map(str::to_owned)
}

/// Writes `text` as Kubernetes writes a ConfigMap's new version: into a new timestamped
/// directory, then `..data` swapped to it by a rename; `pagegate.yaml` links through `..data`.
fn publish(dir: &Path, version: &str, text: &str) {
    let data = dir.join(version);
    std::fs::create_dir(&data).expect("version dir");
    std::fs::write(data.join("pagegate.yaml"), text).expect("write");
    let staged = dir.join("..data_tmp");
    std::os::unix::fs::symlink(version, &staged).expect("symlink");
    std::fs::rename(&staged, dir.join("..data")).expect("swap");
    let link = dir.join("pagegate.yaml");
    if !link.exists() {
        std::os::unix::fs::symlink("..data/pagegate.yaml", &link).expect("link");
    }
}

/// An upstream whose `/export` streams 30 rows of 9 bytes, one every `every`; `[]` elsewhere.
async fn exporting(every: Duration) -> Upstream {
    Upstream::start(move |req| async move {
        if req.uri().path() == "/export" {
            http::Response::new(slow_rows(30, every, b"{\"id\":1}\n"))
        } else {
            http::Response::new(crate::support::full(bytes::Bytes::from_static(b"[]")))
        }
    })
    .await
}

/// Starts `GET /export` on `proxy`; the task gives the body's length once it ends.
fn export(proxy: u16) -> tokio::task::JoinHandle<Result<usize, hyper::Error>> {
    tokio::spawn(async move {
        let client = crate::support::client();
        let request = http::Request::get(format!("http://127.0.0.1:{proxy}/export"))
            .body(crate::support::full(bytes::Bytes::new()))
            .expect("request");
        let response = client.request(request).await.expect("export starts");
        assert_eq!(response.status(), 200);
        response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().len())
    })
}

#[tokio::test]
async fn a_configmap_swap_reloads_while_an_export_streams_and_a_wrong_version_changes_nothing() {
    let upstream = exporting(Duration::from_millis(100)).await;
    let dir = scratch_dir("configmap");
    let (proxy, admin) = (free_port(), free_port());
    publish(
        &dir,
        "..v1",
        &config(proxy, admin, &upstream.url(), 2, "0s"),
    );
    let path = dir.join("pagegate.yaml");
    let mut running = Running::start(&path, admin, &[]).await;
    let first = hash(&running).await;
    // A long export streams across the swap, to a route the new version removes.
    let streaming = export(proxy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let v2 = config(proxy, admin, &upstream.url(), 3, "0s");
    let v2 = v2.replace("\n  - {name: export, path: /export, upstream: app}", "");
    assert!(!v2.contains("/export"), "{v2}");
    publish(&dir, "..v2", &v2);
    let deadline = Instant::now() + Duration::from_secs(5);
    while hash(&running).await == first {
        assert!(Instant::now() < deadline, "the swap did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    get(&format!("http://127.0.0.1:{proxy}/events")).await;
    assert!(upstream.last().query().contains("limit=3"));
    assert!(!streaming.is_finished(), "the export outlives the swap");
    let bytes = streaming
        .await
        .expect("task")
        .expect("the export completes");
    assert_eq!(bytes, 30 * 9, "on the route it started on");
    let gone = get(&format!("http://127.0.0.1:{proxy}/export")).await;
    assert_eq!(gone.status, 404, "new requests use the new version");
    let second = hash(&running).await;

    publish(&dir, "..v3", "routes: [oops");
    let failed = "pagegate_reloads_total{result=\"failed\"} 1";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !running.admin("/metrics").await.text().contains(failed) {
        assert!(
            Instant::now() < deadline,
            "the wrong version was not refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running.alive());
    assert_eq!(hash(&running).await, second, "the running config stays");
    // An unrelated file's change tries nothing: the refused version is tried again only
    // after its back-off (2 s).
    std::fs::write(dir.join("unrelated"), "x").expect("write");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let metrics = running.admin("/metrics").await.text();
    assert!(metrics.contains(failed), "{metrics}");
    // Fixed, it applies.
    publish(&dir, "..v4", &v2.replace("limit: 3", "limit: 4"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while hash(&running).await == second {
        assert!(
            Instant::now() < deadline,
            "the fixed version did not reload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_finishes_a_long_stream_and_exits_zero() {
    // A long export: 30 rows, one every 100 ms.
    let upstream = exporting(Duration::from_millis(100)).await;
    let scratch = scratch_dir("sigterm");
    let path = scratch.join("pagegate.yaml");
    let (proxy, admin) = (free_port(), free_port());
    std::fs::write(&path, config(proxy, admin, &upstream.url(), 2, "1s")).expect("write");
    let mut running = Running::start(&path, admin, &[]).await;
    let streaming = export(proxy);
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.signal("TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = running.admin("/ready").await;
    assert_eq!(ready.status, 503, "/ready turns 503 first");
    let during = get(&format!("http://127.0.0.1:{proxy}/events")).await;
    assert_eq!(during.status, 200, "traffic is served during drain_delay");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", proxy))
            .await
            .is_err(),
        "new connections are refused after drain_delay"
    );
    let bytes = streaming
        .await
        .expect("task")
        .expect("the export completes");
    assert_eq!(bytes, 30 * 9, "every row arrived");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = running.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "pagegate did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
}

/// A database that accepts connections and never answers: a start waits on it for its
/// `connect_timeout`. The receiver hears of each connection (the start has begun its check).
async fn silent_database() -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let (reached, reaching) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
            let _ = reached.send(());
        }
    });
    (port, reaching)
}

/// `pagegate run` of a table route on the silent database `port`, checked for 3 s at start;
/// its config's directory lives as long as the last item.
fn checking(name: &str, port: u16) -> (Running, u16, Scratch) {
    let scratch = scratch_dir(name);
    let path = scratch.join("pagegate.yaml");
    let (proxy, admin) = (free_port(), free_port());
    let yaml = format!(
        "{CURSORS}\nlisten: 127.0.0.1:{proxy}\nadmin: {{listen: 127.0.0.1:{admin}}}\npostgres: {{main: \
         {{url: 'postgres://u@127.0.0.1:{port}/db', connect_timeout: 3s}}}}\nroutes:\n  - \
         {{name: events, path: /events, table: {{database: main, name: events, columns: [id], \
         key: [id]}}}}\n"
    );
    std::fs::write(&path, yaml).expect("write");
    (
        Running::spawn(&path, admin, &["--no-watch"]),
        admin,
        scratch,
    )
}

#[tokio::test]
async fn signals_while_the_databases_are_checked_reload_nothing_and_stop_at_once() {
    use std::os::unix::process::ExitStatusExt;
    let (port, mut reaching) = silent_database().await;
    let (mut running, admin, _scratch) = checking("sighup-start", port);
    tokio::time::timeout(Duration::from_secs(10), reaching.recv())
        .await
        .expect("the start checks the database");
    running.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        running.alive(),
        "a SIGHUP during the start ended the process"
    );
    // The check gives up after connect_timeout (the route answers 503 until the database
    // does), and the process serves.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", admin))
        .await
        .is_err()
    {
        if let Some(status) = running.child.try_wait().expect("wait") {
            panic!("pagegate ended: {status:?} (signal {:?})", status.signal());
        }
        assert!(Instant::now() < deadline, "pagegate did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(running.admin("/live").await.status, 200);
    // The SIGHUP reloaded nothing, neither during the start nor once it served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = running.admin("/metrics").await.text();
    let reloads: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("pagegate_reloads_total") && !line.ends_with(" 0"))
        .collect();
    assert!(reloads.is_empty(), "{reloads:?}");

    // A SIGTERM during the check stops the start at once: nothing is served to drain.
    let (port, mut reaching) = silent_database().await;
    let (mut running, _, _scratch) = checking("sigterm-start", port);
    tokio::time::timeout(Duration::from_secs(10), reaching.recv())
        .await
        .expect("the start checks the database");
    running.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(2);
    let status = loop {
        if let Some(status) = running.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}
