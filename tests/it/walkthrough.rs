//! README's "Putting it in front of a real backend", run as written: its YAML saved as
//! `pagegate.yaml`, its shell lines run by `sh` with the test build's `pagegate` on PATH (the
//! install step's result), a backend on the address the YAML names, and a client that walks
//! the list by the `Link` headers pagegate adds. A README edit that breaks the walk-through
//! fails here. Only the addresses change: the backend's port in the YAML and the listener's
//! (`PAGEGATE_LISTEN`) are free ones, so a demo left running on 8080 cannot fail the suite.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::get;

/// The fenced blocks of `lang` in README's section `heading`, in order.
fn blocks(heading: &str, lang: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading}"));
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = section;
    while let Some(at) = rest.find(&fence) {
        let body = &rest[at + fence.len()..];
        let end = body.find("```").expect("a closing fence");
        out.push(body[..end].to_owned());
        rest = &body[end..];
    }
    out
}

/// The shell lines of a block, comments and continuation lines joined as `sh` reads them.
fn commands(block: &str) -> Vec<String> {
    block
        .lines()
        .map(|l| l.split(" #").next().unwrap_or(l).trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// `sh -c line` in `dir`, with the test build's pagegate first on PATH, listening on `listen`.
fn sh(dir: &std::path::Path, line: &str, listen: &str) -> Command {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_pagegate"))
        .parent()
        .expect("bin dir");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .env("PATH", path)
        .env("PAGEGATE_LISTEN", listen)
        .env_remove("PAGEGATE_CONFIG");
    command
}

/// Stops the `run` line's pagegate (its pid written by the wrapping `sh`) when the test
/// ends, passed or not, then the `sh` itself.
struct Running {
    sh: Child,
    pid_file: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|pid| *pid > 1)
        {
            // The shell's own `kill`: a bare Debian has no /bin/kill (procps).
            let _ = Command::new("sh")
                .args(["-c", &format!("kill -TERM {pid}")])
                .stdin(Stdio::null())
                .status();
        }
        let _ = self.sh.kill();
        let _ = self.sh.wait();
    }
}

#[tokio::test]
async fn the_readme_walkthrough_runs_as_written() {
    let heading = "## Putting it in front of a real backend";
    let yaml = blocks(heading, "yaml")
        .into_iter()
        .next()
        .expect("the YAML");
    let shell = blocks(heading, "sh")
        .into_iter()
        .next()
        .expect("the commands");
    let dir = crate::support::scratch_dir("walkthrough");
    // The backend: the demo's naive list API, which pages by id_gt, on a free port that
    // replaces the YAML's.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let backend = listener.local_addr().expect("addr").to_string();
    tokio::spawn(pagegate::serve_backend(listener, 2_500));
    assert!(yaml.contains("127.0.0.1:3000"), "the YAML's backend moved");
    let yaml = yaml.replace("127.0.0.1:3000", &backend);
    std::fs::write(dir.join("pagegate.yaml"), &yaml).expect("write");
    // Read as `check` reads it: the cursor key's variable is set only on the `run` line.
    let config = pagegate::Config::check(&dir.join("pagegate.yaml")).map_err(|e| e.to_string());
    let listen = format!("127.0.0.1:{}", crate::support::redis::free_port());

    let lines = commands(&shell);
    let [check, run] = lines.as_slice() else {
        panic!("README's walk-through is a check line and a run line: {lines:?}");
    };
    let out = sh(&dir, check, &listen)
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`{check}`: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("route events"), "{said}");
    // The line as written, in the background of an `sh` that notes its pid.
    let pid_file = dir.join("pagegate.pid");
    let child = sh(
        &dir,
        &format!("{run} &\necho $! > pagegate.pid\nwait"),
        &listen,
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("run");
    let _running = Running {
        sh: child,
        pid_file,
    };
    config.expect("the README's YAML is valid");
    let base = format!("http://{listen}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&listen).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "`{run}` did not start listening on {listen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A client walks the list by Link: every row once, in order, 100 a page.
    let (seen, pages) = walk(&base).await;
    assert_eq!(
        seen,
        (1..=2_500).collect::<Vec<u64>>(),
        "every row once, in order"
    );
    // 25 full pages; a last, empty one when a full page cannot tell it was the last.
    assert!((25..=26).contains(&pages), "{pages} pages");
}

/// Follows the `Link` headers from `{base}/events` to the end: the ids seen and the pages read.
async fn walk(base: &str) -> (Vec<u64>, usize) {
    let mut url = format!("{base}/events");
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let page = get(&url).await;
        assert_eq!(page.status, 200, "{url}: {}", page.text());
        let items = page.json();
        let items = items.as_array().expect("a JSON array");
        assert!(items.len() <= 100, "default_limit 100");
        seen.extend(items.iter().map(|item| item["id"].as_u64().expect("an id")));
        pages += 1;
        let Some(next) = page
            .header("link")
            .and_then(|l| Some(l.strip_prefix('<')?.split_once('>')?.0.to_owned()))
        else {
            break;
        };
        url = format!("{base}{next}");
        assert!(pages <= 30, "the walk does not end");
    }
    (seen, pages)
}
