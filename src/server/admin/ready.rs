//! `GET /ready`: 200 while the config is loaded and no drain has started, with each upstream's
//! and database's reachability in the body and in `pagegate_backend_up`. Only the names in
//! `admin.ready_requires` fail readiness, so one shared database's blip does not pull every
//! replica out of its Service.
//!
//! Backends are probed by one background task every [`INTERVAL`], never by the request: a
//! probe may wait [`PROBE_TIMEOUT`] for a backend that does not answer, longer than a
//! kubelet's default probe timeout, and a burst of probers must not become a burst of probes.
//! `/ready` answers at once from the last round; after a reload it waits up to
//! [`NEW_CONFIG_WAIT`] for a round of the new config's backends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use http::StatusCode;
use serde::Serialize;
use tokio::sync::{Notify, watch};

use super::json;
use crate::Response;
use crate::proxy::generation::Generation;
use crate::server::Handle;

/// How often the backends are probed.
const INTERVAL: Duration = Duration::from_secs(5);
/// Longest one probe waits for its backend.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest `/ready` waits for the first round of a config's backends.
const NEW_CONFIG_WAIT: Duration = Duration::from_millis(500);

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

/// A round of probes: the config it was for and each backend's answer.
#[derive(Debug)]
struct Round {
    hash: String,
    checks: Vec<Check>,
}

/// The last round of probes, and a bell that asks for the next one early.
#[derive(Debug)]
pub(super) struct Probes {
    last: watch::Sender<Option<Arc<Round>>>,
    early: Notify,
}

impl Default for Probes {
    fn default() -> Self {
        Self {
            last: watch::Sender::new(None),
            early: Notify::new(),
        }
    }
}

/// Probes the running config's backends every [`INTERVAL`] (sooner when `/ready` sees a new
/// config), and keeps `pagegate_backend_up` to exactly those backends. Runs until dropped.
pub(super) async fn probe_forever(handle: Handle, probes: Arc<Probes>) {
    let mut shown: HashSet<(&'static str, String)> = HashSet::new();
    loop {
        let generation = handle.generation();
        let checks = probe(&generation).await;
        let lifecycle = &handle.metrics.lifecycle;
        let now: HashSet<_> = checks.iter().map(|c| (c.kind, c.name.clone())).collect();
        for (kind, name) in shown.difference(&now) {
            lifecycle.forget_backend(kind, name);
        }
        for check in &checks {
            lifecycle.backend(check.kind, &check.name, check.up);
        }
        shown = now;
        let hash = generation.config().hash();
        probes
            .last
            .send_replace(Some(Arc::new(Round { hash, checks })));
        drop(generation);
        tokio::select! {
            () = tokio::time::sleep(INTERVAL) => {}
            () = probes.early.notified() => {}
        }
    }
}

/// The last round for the config that runs: waits a moment for one after a reload.
async fn round(probes: &Probes, hash: &str) -> Option<Arc<Round>> {
    let current = |r: &Option<Arc<Round>>| r.as_ref().is_some_and(|r| r.hash == hash);
    if !current(&probes.last.borrow()) {
        probes.early.notify_one();
        let mut last = probes.last.subscribe();
        let _ = tokio::time::timeout(NEW_CONFIG_WAIT, last.wait_for(current)).await;
    }
    probes.last.borrow().clone()
}

/// Whether pagegate is ready, for `/ready` and `pagegate_ready`, from the last round.
fn verdict(handle: &Handle, round: Option<&Round>) -> (bool, &'static str, Vec<Check>) {
    let generation = handle.generation();
    let required = &generation.config().admin.ready_requires;
    let mut checks = round.map(|r| r.checks.clone()).unwrap_or_default();
    for check in &mut checks {
        check.required = required.contains(&check.name);
    }
    for name in required {
        if !checks.iter().any(|c| c.name == *name) {
            checks.push(Check {
                kind: "database",
                name: name.clone(),
                up: false,
                required: true,
                error: Some("not probed yet".to_owned()),
            });
        }
    }
    let failing = checks.iter().any(|c| c.required && !c.up);
    let (ready, status) = match (handle.draining(), failing) {
        (true, _) => (false, "draining"),
        (false, true) => (false, "not_ready"),
        (false, false) => (true, "ready"),
    };
    (ready, status, checks)
}

/// Sets `pagegate_ready` from the last round, at a scrape.
pub(super) fn sample(handle: &Handle, probes: &Probes) {
    let round = probes.last.borrow().clone();
    let (ready, _, _) = verdict(handle, round.as_deref());
    handle.metrics.lifecycle.ready(ready);
}

/// The answer to `GET /ready`.
pub(super) async fn answer(handle: &Handle, probes: &Probes) -> Response {
    let hash = handle.generation().config().hash();
    let round = round(probes, &hash).await;
    let (ready, status, checks) = verdict(handle, round.as_deref());
    handle.metrics.lifecycle.ready(ready);
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
                let Some(address) = probe_address(&origin) else {
                    return (name, Err("the upstream has no address".to_owned()));
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
            let status = database.pool().status();
            if status.size > 0 && status.available == 0 {
                // Every connection is out serving a request: the database answers. A probe
                // would only queue behind the traffic.
                return (name, Ok(()));
            }
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
    checks
}

/// Where an upstream's probe connects: its authority, with the scheme's port when the url
/// gives none (as its client connects).
fn probe_address(origin: &http::Uri) -> Option<String> {
    let authority = origin.authority()?;
    Some(match (origin.port(), origin.scheme_str()) {
        (Some(_), _) => authority.to_string(),
        (None, Some("https")) => format!("{authority}:443"),
        (None, _) => format!("{authority}:80"),
    })
}

#[cfg(test)]
#[test]
fn probes_connect_to_the_scheme_port() {
    let address = |uri: &str| probe_address(&uri.parse().expect("uri"));
    assert_eq!(
        address("https://api.internal/").as_deref(),
        Some("api.internal:443")
    );
    assert_eq!(
        address("http://api.internal/").as_deref(),
        Some("api.internal:80")
    );
    assert_eq!(
        address("https://[::1]:8443/").as_deref(),
        Some("[::1]:8443")
    );
}
