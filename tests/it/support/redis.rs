//! A real `redis-server`, started by the test on a free loopback port with no persistence,
//! killed when dropped. Its absence fails the test with the install command: tests never skip.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub addr: SocketAddr,
    child: Option<Child>,
    /// Arguments of its own (TLS), after the common ones.
    extra: Vec<String>,
}

/// A port nothing listens on now, never handed out before in this test process: the kernel
/// may give a port just released to the next `bind(0)`, and two tests running at once must
/// not both start a server on it.
pub fn free_port() -> u16 {
    static HANDED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut handed = HANDED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(|port| vec!["--port".to_owned(), port.to_string()])
    }

    /// A server whose own arguments `args(port)` gives (say `--port 0 --tls-port PORT …`).
    pub fn start_with(args: impl FnOnce(u16) -> Vec<String>) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let extra = args(addr.port());
        let mut server = Self {
            addr,
            child: None,
            extra,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// A config with this server as `redis` (500 ms timeout), an admin listener, a denying
    /// default, the upstream `app` (`{upstream}`) and `routes` (YAML list lines).
    pub fn config(&self, routes: &str) -> String {
        format!(
            "redis: {{url: '{}', timeout: 500ms}}\nadmin: {{listen: 127.0.0.1:0}}\ndefault: {{action: deny}}\nupstreams: {{app: {{url: '{{upstream}}'}}}}\nroutes:\n{routes}",
            self.url()
        )
    }

    /// Kills the server (Redis "dies"); [`Self::restart`] brings it back on the same port.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it with `apt-get install redis-server` (.ci/run does)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A connection to `redis`, for a test's own commands.
pub async fn connect(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis")
}

/// The keys of `redis` that match `pattern`.
pub async fn keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .expect("KEYS")
}

/// No slot set of `redis` matching `pattern` holds a lease (a set whose last lease is given
/// back is gone).
pub async fn assert_no_leases(redis: &RedisServer, pattern: &str) {
    let mut conn = connect(redis).await;
    for key in keys(&mut conn, pattern).await {
        let held = held(&mut conn, &key).await;
        assert_eq!(held, 0, "{key} holds a lease nobody will give back");
    }
}

/// How many leases the slot set `key` holds.
pub async fn held(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(conn)
        .await
        .expect("ZCARD")
}

/// Lua script runs `redis` has served (`EVALSHA`, and `EVAL` when a script was not loaded).
pub async fn script_runs(redis: &RedisServer) -> u64 {
    let mut conn = connect(redis).await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split(['=', ',']).nth(1)?.parse::<u64>().ok())
        .sum()
}
