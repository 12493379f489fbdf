//! One master with one replica, watched by three Sentinels (`redis-server --sentinel`), on
//! loopback, plaintext or TLS only; killed when dropped.

use std::time::{Duration, Instant};

use super::redis::free_port;
use super::redis_topologies::{
    ClusterTls, Processes, cli_over, listening, spawn, tls_args, wait_until,
};

/// One master, one replica, three Sentinels watching them as `pg` (quorum 2, down after
/// 500 ms).
pub struct RedisSentinels {
    pub master: u16,
    pub replica: u16,
    pub sentinels: Vec<u16>,
    tls: Option<ClusterTls>,
    _processes: Processes,
    _dir: super::Scratch,
}

/// The name the Sentinels monitor the master by.
pub const MASTER_NAME: &str = "pg";

impl RedisSentinels {
    pub fn start() -> Self {
        Self::start_over(None)
    }

    /// Every node and Sentinel speaking only TLS (`tls-replication` for the links between
    /// them), with `tls`'s certificate, asking clients for theirs.
    pub fn start_over(tls: Option<ClusterTls>) -> Self {
        let dir = super::scratch_dir("sentinel");
        let (master, replica) = (free_port(), free_port());
        let cli = |port: u16, args: &[&str]| cli_over(tls.as_ref(), port, args);
        let base = |port: u16| {
            let mut args = tls_args(tls.as_ref(), port);
            args.extend([
                "--bind".to_owned(),
                "127.0.0.1".to_owned(),
                "--save".to_owned(),
                String::new(),
                "--appendonly".to_owned(),
                "no".to_owned(),
                // A full sync writes an RDB file even without `save`: into the scratch dir.
                "--dir".to_owned(),
                dir.display().to_string(),
            ]);
            args
        };
        let mut processes = vec![(master, spawn(&base(master)))];
        let mut args = base(replica);
        args.extend(["--replicaof".to_owned(), format!("127.0.0.1 {master}")]);
        processes.push((replica, spawn(&args)));
        for port in [master, replica] {
            wait_until(Duration::from_secs(10), "redis-server listens", || {
                listening(port)
            });
        }
        wait_until(Duration::from_secs(10), "the replica is in sync", || {
            cli(replica, &["info", "replication"]).contains("master_link_status:up")
        });
        let sentinels: Vec<u16> = (0..3).map(|_| free_port()).collect();
        for &port in &sentinels {
            // A Sentinel rewrites its config file: each has its own, writable.
            let conf = dir.join(format!("sentinel-{port}.conf"));
            let ports = match &tls {
                None => format!("port {port}"),
                Some(tls) => format!(
                    "port 0\ntls-port {port}\ntls-replication yes\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}",
                    tls.cert.display(),
                    tls.key.display(),
                    tls.ca.display()
                ),
            };
            std::fs::write(
                &conf,
                format!(
                    "bind 127.0.0.1\n{ports}\ndir {}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 500\nsentinel failover-timeout {MASTER_NAME} 2000\n",
                    dir.display()
                ),
            )
            .expect("sentinel config");
            let args = [conf.display().to_string(), "--sentinel".to_owned()];
            processes.push((port, spawn(&args)));
        }
        for &port in &sentinels {
            wait_until(Duration::from_secs(10), "redis-sentinel listens", || {
                listening(port)
            });
            wait_until(
                Duration::from_secs(20),
                "each Sentinel sees the replica and the others",
                || {
                    let replicas = cli(port, &["sentinel", "replicas", MASTER_NAME]);
                    let others = cli(port, &["sentinel", "sentinels", MASTER_NAME]);
                    replicas.contains(&replica.to_string())
                        && sentinels
                            .iter()
                            .filter(|s| **s != port)
                            .all(|s| others.contains(&s.to_string()))
                },
            );
        }
        Self {
            master,
            replica,
            sentinels,
            tls,
            _processes: Processes(processes),
            _dir: dir,
        }
    }

    pub fn urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        self.sentinels
            .iter()
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
            .collect()
    }

    /// [`cli`](super::redis_topologies::cli) to `port`, over TLS when these speak it.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli_over(self.tls.as_ref(), port, args)
    }

    /// The master's port as the Sentinel on `sentinel` reports it.
    pub fn reported_master(&self, sentinel: u16) -> u16 {
        let answer = self.cli(
            sentinel,
            &["sentinel", "get-master-addr-by-name", MASTER_NAME],
        );
        answer
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Asks a Sentinel to fail over, and waits until the replica is master: returns when.
    pub fn fail_over(&self) -> Instant {
        let said = self.cli(self.sentinels[0], &["sentinel", "failover", MASTER_NAME]);
        assert_eq!(said, "OK", "SENTINEL FAILOVER answered {said}");
        // Promoted, and the Sentinels say so: their clients go by what they report.
        wait_until(Duration::from_secs(15), "the replica is promoted", || {
            self.cli(self.replica, &["role"]).starts_with("master")
                && self
                    .sentinels
                    .iter()
                    .all(|&s| self.reported_master(s) == self.replica)
        });
        Instant::now()
    }
}
