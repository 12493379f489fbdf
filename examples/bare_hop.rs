//! The floor under pagegate's hop: the same HTTP libraries with nothing of pagegate's.
//!
//! hyper-util's auto server (with upgrades, as pagegate serves) and its pooled legacy client
//! (as pagegate forwarded with until it got a pool of its own, `src/upstream/pool.rs`, which
//! does about 8,000 fewer instructions a request: against this floor, pagegate's own work now
//! looks that much smaller than it is), on a current-thread runtime (as `--workers 1`), passing every
//! request to one upstream unchanged but for its URI. No routing, policy, headers, limits,
//! timers, metrics or log. `BARE=1 bench/hop.sh` runs it beside nginx and pagegate, so the
//! share of pagegate's hop that is its own work, and the share that is the libraries', are
//! measured in the same rounds.
//!
//! ```text
//! cargo run --release --example bare_hop -- 127.0.0.1:19006 127.0.0.1:19001
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::Uri;
use http::uri::{Authority, Scheme};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare_hop LISTEN_ADDR UPSTREAM_ADDR (say 127.0.0.1:19006 127.0.0.1:19001)";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let upstream: Authority = args.next().ok_or(usage)?.parse()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen, upstream))
}

async fn serve(listen: SocketAddr, upstream: Authority) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(listen).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let upstream = upstream.clone();
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            let mut parts = req.uri().clone().into_parts();
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(upstream.clone());
            *req.uri_mut() = Uri::from_parts(parts).expect("a path and an authority");
            let forwarded = client.request(req);
            async move {
                Ok::<_, Infallible>(match forwarded.await {
                    Ok(answer) => answer.map(Either::Left),
                    Err(_) => {
                        let mut answer = http::Response::new(Either::Right(Empty::<Bytes>::new()));
                        *answer.status_mut() = http::StatusCode::BAD_GATEWAY;
                        answer
                    }
                })
            }
        });
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}
