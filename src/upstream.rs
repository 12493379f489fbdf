//! The upstream hop: one pooled keep-alive client per backend, timeouts, header rules, and
//! bodies streamed frame by frame in both directions.
//!
//! A request whose client goes away is dropped here too: hyper drops the response future (or
//! the response body), which drops the in-flight upstream exchange and closes its connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::Service;

use crate::body::IdleTimeout;
use crate::config::{Config, UpstreamConfig};
use crate::error::ProxyError;
use crate::routing::Matched;
use crate::{Body, Request, Response};

pub mod headers;

/// The client's address, stored in request extensions by the server.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Why the upstream did not answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connection refused, reset, or the exchange failed before a response head.
    #[error("upstream `{upstream}` is unavailable")]
    Unavailable {
        /// The upstream.
        upstream: String,
    },
    /// Connecting or waiting for the response head took too long.
    #[error("upstream `{upstream}` did not {stage} within {after:?}")]
    Timeout {
        /// The upstream.
        upstream: String,
        /// `accept a connection` or `answer`.
        stage: &'static str,
        /// The configured limit.
        after: Duration,
    },
}

/// One backend and its connection pool.
#[derive(Debug, Clone)]
struct Upstream {
    config: Arc<UpstreamConfig>,
    client: Client<HttpConnector, Body>,
    trust_forwarded: bool,
}

/// Relays requests to their upstream; the innermost service of the stack.
#[derive(Debug, Clone)]
pub struct Proxy {
    upstreams: Arc<HashMap<String, Upstream>>,
}

// === impl Proxy ===

impl Proxy {
    /// One pooled client per configured upstream.
    pub fn new(config: &Config) -> Self {
        let upstreams = config
            .upstreams
            .iter()
            .map(|(name, u)| {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(u.connect_timeout));
                connector.set_nodelay(true);
                let client = Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(u.pool_idle_timeout)
                    .pool_max_idle_per_host(u.pool_max_idle)
                    .http2_only(u.http2)
                    .timer(TokioTimer::new())
                    .build(connector);
                let upstream = Upstream {
                    config: Arc::clone(u),
                    client,
                    trust_forwarded: config.trust_forwarded,
                };
                (name.clone(), upstream)
            })
            .collect();
        Self {
            upstreams: Arc::new(upstreams),
        }
    }
}

impl Service<Request> for Proxy {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let upstream = req
            .extensions()
            .get::<Matched>()
            .and_then(|m| self.upstreams.get(m.upstream()))
            .cloned();
        Box::pin(async move {
            let Some(upstream) = upstream else {
                // The router always names a declared upstream; reaching this is a bug.
                tracing::error!("request reached the proxy without a known upstream");
                return Ok(ProxyError::from(UpstreamError::Unavailable {
                    upstream: "-".to_owned(),
                })
                .into_response());
            };
            Ok(upstream.forward(req).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "upstream failed");
                e.into_response()
            }))
        })
    }
}

// === impl Upstream ===

impl Upstream {
    async fn forward(&self, req: Request) -> Result<Response, ProxyError> {
        let config = &self.config;
        let (mut parts, body) = req.into_parts();
        let client = parts.extensions.get::<ClientAddr>().map(|c| c.0);
        let host = parts
            .headers
            .get(http::header::HOST)
            .cloned()
            .or_else(|| parts.uri.authority().and_then(|a| a.as_str().parse().ok()));
        let authority = config.origin.authority().map_or("", |a| a.as_str());
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        parts.uri = Uri::try_from(format!(
            "http://{authority}{}{path_and_query}",
            config.base_path
        ))
        .map_err(|_| self.unavailable())?;
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::remove_method_overrides(&mut parts.headers);
        headers::set_forwarding(
            &mut parts.headers,
            client,
            host.as_ref(),
            &config.host,
            authority,
            self.trust_forwarded,
        );
        parts.version = http::Version::HTTP_11;
        let body = IdleTimeout::new(body, config.idle_timeout).boxed();
        let request = http::Request::from_parts(parts, body);

        let response = match tokio::time::timeout(
            config.response_timeout,
            self.client.request(request),
        )
        .await
        {
            Err(_) => return Err(self.timeout("answer", config.response_timeout)),
            Ok(Err(e)) => {
                if e.is_connect() && is_timeout(&e) {
                    return Err(self.timeout("accept a connection", config.connect_timeout));
                }
                tracing::warn!(upstream = %config.name, error = %e, source = ?std::error::Error::source(&e), "upstream request failed");
                return Err(self.unavailable());
            }
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        let body = IdleTimeout::new(body, config.idle_timeout).boxed();
        Ok(http::Response::from_parts(parts, body))
    }

    fn unavailable(&self) -> ProxyError {
        UpstreamError::Unavailable {
            upstream: self.config.name.clone(),
        }
        .into()
    }

    fn timeout(&self, stage: &'static str, after: Duration) -> ProxyError {
        UpstreamError::Timeout {
            upstream: self.config.name.clone(),
            stage,
            after,
        }
        .into()
    }
}

/// Whether a connect error is the connector's timeout (hyper-util reports it as an
/// `io::ErrorKind::TimedOut` in the source chain).
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = e.source();
    }
    false
}
