//! Real `pagegate run` processes of the test build, stopped when the test ends: one whose
//! admin listener answers ([`Running`]), and replicas of a config on a port of their own
//! ([`Replica`]).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::get;

/// A `pagegate run` of the file at `path`, its admin listener answering.
pub struct Running {
    pub child: Child,
    pub admin: u16,
}

impl Running {
    pub async fn start(path: &Path, admin: u16, args: &[&str]) -> Self {
        let mut running = Self::spawn(path, admin, args);
        running.started().await;
        running
    }

    /// Waits for the admin listener; panics, saying why, if pagegate exits or takes 10 s.
    pub async fn started(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.admin))
            .await
            .is_err()
        {
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!("pagegate exited at start ({status})");
            }
            assert!(Instant::now() < deadline, "pagegate did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Started, without waiting for its admin listener.
    pub fn spawn(path: &Path, admin: u16, args: &[&str]) -> Self {
        Self::spawn_to(path, admin, args, Stdio::null())
    }

    /// As [`Running::spawn`], its stderr going to `stderr`.
    pub fn spawn_to(path: &Path, admin: u16, args: &[&str], stderr: Stdio) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_pagegate"))
            .args(["run", "--workers", "1", "--config"])
            .arg(path)
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start pagegate");
        Self { child, admin }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{name} {}", self.child.id()))
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub async fn admin(&self, path: &str) -> crate::support::Got {
        get(&format!("http://127.0.0.1:{}{path}", self.admin)).await
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `pagegate` process, killed when dropped.
pub struct Replica {
    port: u16,
    child: Child,
    config: std::path::PathBuf,
}

impl Replica {
    pub fn start(yaml: &str) -> Self {
        Self::start_with_env(yaml, &[])
    }

    /// One whose environment also holds `env` (names and values).
    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Self {
        let port = super::redis::free_port();
        let path = std::env::temp_dir().join(format!(
            "pagegate-replica-{}-{port}.yaml",
            std::process::id()
        ));
        std::fs::write(
            &path,
            format!("listen: 127.0.0.1:{port}\naccess_log: false\n{yaml}"),
        )
        .expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_pagegate"))
            .args(["run", "--workers", "1", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .envs(env.iter().copied())
            .spawn()
            .expect("start pagegate");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pagegate did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            port,
            child,
            config: path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the process's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}
