//! A JWK set fetched from `jwks_url` ([`Jwks`]): fetched when the identity is built, again
//! every `jwks_refresh`, and when a token names a `kid` the set lacks — at most once every
//! `jwks_min_refresh`, so tokens with made-up `kid`s cannot turn into a flood of fetches. A
//! fetch that fails (unreachable, not 200, too large, not a set) keeps the last good set.
//! Fetches run in tasks of their own: a request that asked for one waits at most
//! [`REFETCH_WAIT`] for it, and leaving does not cancel it; other requests never wait. A token
//! whose `kid` a fetch under way may bring finds the keys unavailable (503), not itself
//! refused: a new token would fare no better, and it costs its client nothing.

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use super::config::JwksUrl;
use super::keys::{KeySet, MAX_JWKS_BYTES};
use crate::telemetry::IdentityCounters;

/// How long one fetch (connect, answer, body) may take.
pub(crate) const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request whose unknown `kid` started a fetch waits for it.
pub(crate) const REFETCH_WAIT: Duration = Duration::from_secs(1);

/// A fetched JWK set and what fetches it.
pub(crate) struct Jwks {
    settings: JwksUrl,
    identity: String,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    set: ArcSwapOption<KeySet>,
    /// The fingerprint of the body `set` was read from: a fetch that finds the same keeps the
    /// same set, so tokens remembered under it stay remembered (a client naming an unknown
    /// `kid` cannot empty the token cache).
    body: std::sync::Mutex<Option<[u8; 32]>>,
    /// When the last fetch started.
    last: std::sync::Mutex<Option<Instant>>,
    /// Fetches under way.
    in_flight: std::sync::atomic::AtomicUsize,
    /// Fetches by outcome.
    counters: IdentityCounters,
    /// The refresh task, aborted when the set is dropped.
    task: std::sync::OnceLock<tokio::task::AbortHandle>,
}

/// A fetch under way, counted in [`Jwks::in_flight`] until dropped (also when its task is
/// aborted or panics).
struct InFlight(Arc<Jwks>);

impl InFlight {
    fn new(jwks: &Arc<Jwks>) -> Self {
        jwks.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(Arc::clone(jwks))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Drop for Jwks {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.settings.url)
            .field("set", &self.set.load())
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// The set of `settings`, fetched now and every `refresh` by a task that ends when the
    /// set is dropped. `Err` says why its TLS cannot be set up. `seed` (the set before a
    /// reload that changed the fetch's TLS or timing, not its URL) lends its keys until the
    /// first fetch replaces them: a certificate rotation must not leave tokens unverifiable
    /// while the issuer is slow or unreachable.
    pub(crate) fn start(
        identity: &str,
        settings: &JwksUrl,
        counters: IdentityCounters,
        seed: Option<&Self>,
    ) -> Result<Arc<Self>, String> {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(JWKS_FETCH_TIMEOUT));
        let connector = crate::upstream::https(tcp, Some(&settings.tls), false)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let jwks = Arc::new(Self {
            settings: settings.clone(),
            identity: identity.to_owned(),
            client,
            set: ArcSwapOption::new(seed.and_then(Self::current)),
            body: std::sync::Mutex::new(seed.and_then(|seed| {
                *seed
                    .body
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            })),
            last: std::sync::Mutex::new(None),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            counters,
            task: std::sync::OnceLock::new(),
        });
        let task = tokio::spawn(refresh(Arc::downgrade(&jwks), settings.refresh));
        let _ = jwks.task.set(task.abort_handle());
        Ok(jwks)
    }

    /// The settings it was built from.
    pub(crate) fn settings(&self) -> &JwksUrl {
        &self.settings
    }

    /// Whether a fetch may start now (the last one started `min_refresh` ago or more, or
    /// `always`); notes that one does.
    fn claim(&self, always: bool) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = always || last.is_none_or(|at| at.elapsed() >= self.settings.min_refresh);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// The last good set, if any fetch succeeded yet.
    pub(crate) fn current(&self) -> Option<Arc<KeySet>> {
        self.set.load_full()
    }

    /// For a token naming a `kid` the set lacks: when the last fetch started `min_refresh`
    /// ago or more, starts one in a task of its own and waits for it (that one, not another
    /// that ends meanwhile) up to [`REFETCH_WAIT`]; then the set as it is. `None` while a
    /// fetch that may bring the `kid` is under way: the keys are unavailable for now.
    pub(crate) async fn refetch(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        use std::sync::atomic::Ordering;
        if self.claim(false) {
            let (done, ended) = tokio::sync::oneshot::channel();
            // Under way from now, not from when the task first runs: a token with the same
            // `kid` meanwhile finds the keys unavailable, not itself refused.
            let under_way = InFlight::new(self);
            let jwks = Arc::clone(self);
            tokio::spawn(async move {
                jwks.fetch_once().await;
                drop(under_way);
                let _ = done.send(());
            });
            return match tokio::time::timeout(REFETCH_WAIT, ended).await {
                Ok(_) => self.current(),
                Err(_) => None,
            };
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.current()
    }

    /// Fetches once; a failure is logged and keeps the last good set.
    async fn fetch(self: &Arc<Self>) {
        let _under_way = InFlight::new(self);
        self.fetch_once().await;
    }

    async fn fetch_once(&self) {
        match tokio::time::timeout(JWKS_FETCH_TIMEOUT, self.get()).await {
            Ok(Ok((set, skipped, body))) => {
                if !skipped.is_empty() {
                    tracing::warn!(identity = %self.identity, url = %crate::config::redact::without_password(&self.settings.url.to_string()), skipped = %skipped.join("; "), "jwks_url: keys skipped");
                }
                tracing::debug!(identity = %self.identity, url = %crate::config::redact::without_password(&self.settings.url.to_string()), ?set, "jwks_url fetched");
                let mut last = self.body.lock().unwrap_or_else(|e| e.into_inner());
                if *last != Some(body) || self.set.load().is_none() {
                    self.set.store(Some(Arc::new(set)));
                    *last = Some(body);
                    self.counters.fetch_changed.inc();
                } else {
                    self.counters.fetch_unchanged.inc();
                }
            }
            Ok(Err(why)) => self.failed(&why),
            Err(_) => self.failed(&format!("no answer within {JWKS_FETCH_TIMEOUT:?}")),
        }
    }

    fn failed(&self, why: &str) {
        self.counters.fetch_failed.inc();
        let kept = if self.set.load().is_some() {
            "the last good set is kept"
        } else {
            "no set yet: tokens cannot be verified"
        };
        tracing::warn!(identity = %self.identity, url = %crate::config::redact::without_password(&self.settings.url.to_string()), "jwks_url fetch failed: {why}; {kept}");
    }

    /// The set at the URL, the keys skipped, and the body's fingerprint.
    async fn get(&self) -> Result<(KeySet, Vec<String>, [u8; 32]), String> {
        let request = http::Request::get(self.settings.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| {
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            why
        })?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("the body: {e}"))?
            .to_bytes();
        let (set, skipped) = KeySet::jwks(&body)?;
        Ok((set, skipped, crate::tls::fingerprint(&[&body])))
    }
}

/// Fetches now and every `every` while the set is alive; while no fetch has succeeded yet, it
/// retries sooner (1 s after the first failure, then every 10 s).
async fn refresh(jwks: Weak<Jwks>, every: Duration) {
    let mut first = true;
    loop {
        let Some(jwks) = jwks.upgrade() else { return };
        jwks.claim(true);
        jwks.fetch().await;
        let wait = if jwks.current().is_none() {
            every.min(retry_after(first))
        } else {
            every
        };
        first = false;
        drop(jwks);
        tokio::time::sleep(wait).await;
    }
}

/// How soon a fetch that left no set is retried: 1 s after the first, then 10 s.
fn retry_after(first: bool) -> Duration {
    if first {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    }
}
