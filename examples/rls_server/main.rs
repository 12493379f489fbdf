//! An Envoy rate-limit service for trying `store: envoy_rls` and for `bench/limits.sh`: the
//! `limitador` crate's in-memory limiter behind tonic (neither envoyproxy/ratelimit nor
//! limitador-server installs from a package registry).
//!
//! ```text
//! cargo run --release --example rls_server -- 127.0.0.1:8081 limits.json
//! ```
//!
//! `limits.json` is a list of Limitador limits; a request's descriptors are the CEL list
//! `descriptors`. pagegate's default descriptor is `[{key: route}, {key: client}]`, so this
//! limit gives each client of the route `page` 100 requests a minute:
//!
//! ```json
//! [{"namespace": "pagegate", "max_value": 100, "seconds": 60,
//!   "conditions": ["descriptors[0].route == 'page'"], "variables": ["descriptors[0].client"]}]
//! ```
//!
//! It prints `listening on ADDRESS` once it accepts calls.

mod service;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(limits)) = (args.next(), args.next()) else {
        return Err("usage: rls_server ADDRESS LIMITS.json".to_owned());
    };
    let limits = std::fs::read_to_string(&limits).map_err(|e| format!("{limits}: {e}"))?;
    let service = service::Service::new(&limits)?;
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| format!("{address}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {bound}");
    service.serve(listener, std::future::pending()).await
}
