//! `GET /ready`: 200 while the config is loaded and no drain has started, with each upstream's
//! and database's reachability in the body and in `pagegate_backend_up`. Only the names in
//! `admin.ready_requires` fail readiness, so one shared database's blip does not pull every
//! replica out of its Service.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use http::StatusCode;
use serde::Serialize;

use super::json;
use crate::Response;
use crate::proxy::generation::Generation;
use crate::server::Handle;

/// Probes are answered from the last ones for this long, so a burst of probers costs one round.
const FRESH: Duration = Duration::from_secs(1);
/// Longest one probe waits for its backend.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One backend's answer to its probe.
#[derive(Debug, Clone, Serialize)]
struct Check {
    kind: &'static str,
    name: String,
    up: bool,
    required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The last probes, with when and for which config they ran.
#[derive(Debug, Default)]
pub(super) struct Probes {
    last: Mutex<Option<(Instant, String, Vec<Check>)>>,
}

impl Probes {
    /// The checks of `generation`'s backends: the last ones while fresh, else probed now.
    async fn checks(&self, generation: &Generation, hash: &str) -> Vec<Check> {
        if let Ok(last) = self.last.lock()
            && let Some((at, of, checks)) = last.as_ref()
            && at.elapsed() < FRESH
            && of == hash
        {
            return checks.clone();
        }
        let checks = probe(generation).await;
        if let Ok(mut last) = self.last.lock() {
            *last = Some((Instant::now(), hash.to_owned(), checks.clone()));
        }
        checks
    }
}

/// The answer to `GET /ready`.
pub(super) async fn answer(handle: &Handle, probes: &Probes) -> Response {
    let generation = handle.generation();
    let config = generation.config();
    let hash = config.hash();
    let checks = probes.checks(&generation, &hash).await;
    let lifecycle = &handle.metrics.lifecycle;
    for check in &checks {
        lifecycle.backend(check.kind, &check.name, check.up);
    }
    let failing = checks.iter().any(|c| c.required && !c.up);
    let draining = handle.draining();
    let ready = !draining && !failing;
    lifecycle.ready(ready);
    let status = match (draining, failing) {
        (true, _) => "draining",
        (false, true) => "not_ready",
        (false, false) => "ready",
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({"status": status, "config": hash, "checks": checks});
    json(code, &body)
}

/// Probes every upstream (a TCP connection) and database (`SELECT 1` on a pooled connection)
/// of `generation` at once.
async fn probe(generation: &Generation) -> Vec<Check> {
    let required = &generation.config().admin.ready_requires;
    let upstreams = generation
        .config()
        .upstreams
        .iter()
        .map(|(name, settings)| {
            let origin = settings.origin.clone();
            async move {
                let Some(authority) = origin.authority() else {
                    return (name, Err("the upstream has no address".to_owned()));
                };
                let address = match origin.port() {
                    Some(_) => authority.to_string(),
                    None => format!("{authority}:80"),
                };
                let connect = tokio::net::TcpStream::connect(address);
                let outcome = match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err(format!("no connection within {PROBE_TIMEOUT:?}")),
                };
                (name, outcome)
            }
        });
    let databases = generation
        .databases()
        .iter()
        .map(|(name, database)| async move {
            let query = async {
                let client = database.pool().get().await.map_err(|e| e.to_string())?;
                client
                    .simple_query("SELECT 1")
                    .await
                    .map_err(|e| e.to_string())
            };
            let outcome = match tokio::time::timeout(PROBE_TIMEOUT, query).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
            };
            (name, outcome)
        });
    let (upstreams, databases) = tokio::join!(join_all(upstreams), join_all(databases));
    let check = |kind, (name, outcome): (&String, Result<(), String>)| Check {
        kind,
        required: required.contains(name),
        name: name.clone(),
        up: outcome.is_ok(),
        error: outcome.err(),
    };
    let mut checks: Vec<Check> = upstreams
        .into_iter()
        .map(|u| check("upstream", u))
        .collect();
    checks.extend(databases.into_iter().map(|d| check("database", d)));
    for name in required {
        if !checks.iter().any(|c| c.name == *name) {
            checks.push(Check {
                kind: "database",
                name: name.clone(),
                up: false,
                required: true,
                error: Some(
                    "no table route uses it, so pagegate holds no connection to it".to_owned(),
                ),
            });
        }
    }
    checks
}
