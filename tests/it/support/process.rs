//! A real `pagegate run` process of the test build, stopped when the test ends.

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
        let child = Command::new(env!("CARGO_BIN_EXE_pagegate"))
            .args(["run", "--workers", "1", "--config"])
            .arg(path)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pagegate");
        let running = Self { child, admin };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", admin))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "pagegate did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        running
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
