//! Real Redis topologies on loopback, started by the tests: a Cluster of three masters with a
//! replica each (six `redis-server --cluster-enabled yes`), plaintext or TLS only; and what
//! the Sentinel harness ([`super::redis_sentinel`]) shares with it. Every process is killed
//! when its topology is dropped; a missing `redis-server` or `redis-cli` fails with the install
//! command.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Scratch;
use super::redis::free_port;

/// Runs `redis-cli -p PORT ARGS…` and returns what it printed.
pub fn cli(port: u16, args: &[&str]) -> String {
    cli_over(None, port, args)
}

/// The files of a TLS cluster: its CA, and the certificate every node serves (and presents
/// to the others).
#[derive(Clone)]
pub struct ClusterTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The arguments that make a `redis-server` listen on `port`: plaintext, or only TLS (to its
/// replicas too) with `tls`'s certificate, asking clients for theirs.
pub fn tls_args(tls: Option<&ClusterTls>, port: u16) -> Vec<String> {
    let Some(tls) = tls else {
        return vec!["--port".to_owned(), port.to_string()];
    };
    let mut args = ["--port", "0", "--tls-replication", "yes", "--tls-port"]
        .map(str::to_owned)
        .to_vec();
    args.push(port.to_string());
    for (key, file) in [
        ("--tls-cert-file", &tls.cert),
        ("--tls-key-file", &tls.key),
        ("--tls-ca-cert-file", &tls.ca),
    ] {
        args.extend([key.to_owned(), file.display().to_string()]);
    }
    args
}

/// [`cli`], over TLS when `tls` is given.
pub fn cli_over(tls: Option<&ClusterTls>, port: u16, args: &[&str]) -> String {
    let mut command = Command::new("redis-cli");
    if let Some(tls) = tls {
        command.args(["--tls", "--cacert"]).arg(&tls.ca);
        command
            .arg("--cert")
            .arg(&tls.cert)
            .arg("--key")
            .arg(&tls.key);
    }
    let out = command
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run redis-cli ({e}): install it with `apt-get install redis-server` (.ci/run does)")
        });
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn spawn(args: &[String]) -> Child {
    Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}): install it with `apt-get install redis-server` (.ci/run does)")
        })
}

/// Waits up to `limit` for `ready`, else panics with `what`.
pub fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the replicas of the master on `port` have acknowledged all it has written so
/// far (they acknowledge once a second).
pub fn replicated(tls: Option<&ClusterTls>, port: u16) {
    let info = |key: &str| -> Vec<u64> {
        cli_over(tls, port, &["info", "replication"])
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                if key == "offset" {
                    // slaveN:ip=…,port=…,state=online,offset=N,lag=…
                    let fields = value.split(',').find_map(|f| f.strip_prefix("offset="));
                    return name.starts_with("slave").then_some(fields?.parse().ok()?);
                }
                (name == key).then(|| value.trim().parse().ok())?
            })
            .collect()
    };
    let written = info("master_repl_offset")
        .first()
        .copied()
        .expect("a master's offset");
    wait_until(
        Duration::from_secs(10),
        "the replicas have the writes",
        || {
            let acked = info("offset");
            !acked.is_empty() && acked.iter().all(|&o| o >= written)
        },
    );
}

pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Processes by port; each killed when dropped.
pub struct Processes(pub Vec<(u16, Child)>);

impl Processes {
    fn kill(&mut self, port: u16) {
        if let Some(at) = self.0.iter().position(|(p, _)| *p == port) {
            let (_, mut child) = self.0.remove(at);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three masters, three replicas, `cluster-node-timeout` 1 s.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    tls: Option<ClusterTls>,
    processes: Processes,
    /// Dropped after the processes (fields drop in order).
    _dir: Scratch,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_over(None)
    }

    /// A cluster that speaks only TLS, to clients, to its replicas and on its bus.
    pub fn start_over(tls: Option<ClusterTls>) -> Self {
        let dir = super::scratch_dir("cluster");
        let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
        let mut processes = Vec::new();
        for &port in &ports {
            let args = [
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--cluster-node-timeout",
                "1000",
                "--dir",
                &dir.display().to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ];
            let mut args: Vec<String> = args.map(str::to_owned).to_vec();
            args.extend(tls_args(tls.as_ref(), port));
            if tls.is_some() {
                args.extend(["--tls-cluster", "yes"].map(str::to_owned));
            }
            processes.push((port, spawn(&args)));
        }
        for &port in &ports {
            wait_until(Duration::from_secs(10), "redis-server listens", || {
                listening(port)
            });
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(nodes.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        let cli = |port: u16, args: &[&str]| cli_over(tls.as_ref(), port, args);
        cli(ports[0], &create);
        for &port in &ports {
            wait_until(
                Duration::from_secs(20),
                "the cluster is ok on every node",
                || cli(port, &["cluster", "info"]).contains("cluster_state:ok"),
            );
            // A replica that never synced is not eligible for a failover.
            wait_until(Duration::from_secs(20), "every replica is in sync", || {
                let replication = cli(port, &["info", "replication"]);
                replication.contains("role:master") || replication.contains("master_link_status:up")
            });
        }
        Self {
            ports,
            tls,
            processes: Processes(processes),
            _dir: dir,
        }
    }

    pub fn url(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.ports[i])
    }

    /// [`cli`] to node `port`, over TLS when the cluster speaks it.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli_over(self.tls.as_ref(), port, args)
    }

    /// The port of the master that serves `hash_tag`'s slot now, as node `ask` sees it: `None`
    /// while no live master does.
    pub fn master_of(&self, ask: u16, hash_tag: &str) -> Option<u16> {
        let slot: u16 = self
            .cli(ask, &["cluster", "keyslot", hash_tag])
            .parse()
            .expect("a slot");
        // Lines: id host:port@bus flags master-id ping pong epoch state slots…
        for line in self.cli(ask, &["cluster", "nodes"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            if serves {
                let addr = fields[1].split('@').next().expect("host:port");
                return addr.rsplit(':').next().and_then(|p| p.parse().ok());
            }
        }
        None
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        self.processes.kill(port);
    }
}
