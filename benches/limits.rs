//! Limiter memory and cost with many distinct clients: 1,000,000 requests, each from another
//! client address, through a route's real limit layer (per-client rate and slots), once with
//! the default `max_clients` (100,000) and once with room for all of them. Reports the
//! process's RSS growth, the clients kept, and the time per request of the layer against the
//! same service without it, in the same run. Run with `bench/run.sh limits` (release build).
//!
//! `PAGEGATE_BENCH_CLIENTS=200000` for a quicker look.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pagegate::Config;
use pagegate::Metrics;
use pagegate::{BoxError, Request, Response};
use pagegate::{ClientAddr, TrustedProxies};
use pagegate::{LimitLayer, Limits};
use tower::{Layer, Service, ServiceExt};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn limits(max_clients: u64) -> Arc<Limits> {
    let yaml = format!(
        "upstreams: {{app: {{url: 'http://127.0.0.1:9'}}}}
routes:
  - {{path: /x, upstream: app, limits: {{max_clients: {max_clients}, rate: {{per_client: {{requests: 1000000, per: 1s}}}}, concurrency: {{per_client: 100}}}}}}
"
    );
    let config = Config::parse("bench.yaml", &yaml).expect("config");
    let settings = config.routes[0].limits.clone().expect("limits");
    Limits::new(settings, "x", None)
}

/// Client `n`: a distinct IPv6 /64 (one key each), in request extensions as the server puts it.
fn request(n: u64) -> Request {
    let segments = [0x2001, 0xdb8, (n >> 16) as u16, n as u16, 0, 0, 0, 1];
    let ip = IpAddr::V6(Ipv6Addr::from(segments.map(u16::from)));
    let client = ClientAddr::new(SocketAddr::new(ip, 40000), &TrustedProxies::default());
    let mut req = http::Request::get("/x")
        .body(pagegate::full(""))
        .expect("request");
    req.extensions_mut().insert(client);
    req
}

fn inner() -> impl Service<Request, Response = Response, Error = BoxError, Future = impl Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|_req: Request| async {
        Ok::<_, BoxError>(http::Response::new(pagegate::full("")))
    })
}

async fn run(clients: u64, limited: Option<Arc<Limits>>) -> Duration {
    let metrics = Metrics::default().route("x", false);
    let started = Instant::now();
    match limited {
        Some(limits) => {
            let service = LimitLayer::new(limits, metrics).layer(inner());
            for n in 0..clients {
                let response = service.clone().oneshot(request(n)).await.expect("answer");
                assert_eq!(response.status(), 200);
            }
        }
        None => {
            let service = inner();
            for n in 0..clients {
                let response = service.clone().oneshot(request(n)).await.expect("answer");
                assert_eq!(response.status(), 200);
            }
        }
    }
    started.elapsed()
}

fn main() {
    let clients: u64 = std::env::var("PAGEGATE_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let base = run(clients, None).await;
        println!("{clients} distinct clients, one request each, current-thread runtime");
        println!("  without limits:         {:6.0} ns/request", base.as_nanos() as f64 / clients as f64);
        for max_clients in [100_000, clients.max(1000)] {
            let limits = limits(max_clients);
            let before = rss_kib();
            let took = run(clients, Some(Arc::clone(&limits))).await;
            let after = rss_kib();
            println!(
                "  max_clients {max_clients:>9}: {:6.0} ns/request ({:+.0} ns for the limits), {} clients kept, RSS +{:.1} MiB ({:.0} bytes/client kept)",
                took.as_nanos() as f64 / clients as f64,
                (took.as_nanos() as f64 - base.as_nanos() as f64) / clients as f64,
                limits.clients(),
                (after.saturating_sub(before)) as f64 / 1024.0,
                (after.saturating_sub(before)) as f64 * 1024.0 / limits.clients().max(1) as f64,
            );
            drop(limits);
        }
    });
}
