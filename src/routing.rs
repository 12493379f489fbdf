//! Routing: which route a request belongs to, and what happens when none matches.
//!
//! Paths are matched with `matchit` (exact segments, `{param}` segments and a trailing
//! `{*rest}` catch-all). Several routes may share a path when their `methods` are disjoint.
//! Before matching, percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2), so
//! `/ev%65nts` cannot slip past the `/events` route to the backend, which would decode it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::Method;
use tower::{Layer, Service};

use crate::config::{Config, DefaultPolicy, RouteConfig};
use crate::error::ProxyError;
use crate::{Request, Response};

/// The route a request matched, or the default policy's upstream when none did.
#[derive(Debug, Clone)]
pub enum Matched {
    /// A configured route.
    Route(Arc<RouteConfig>),
    /// No route matched and `default.action` is `pass`: relay to this upstream.
    Default(String),
}

impl Matched {
    /// The upstream the request goes to.
    pub fn upstream(&self) -> &str {
        match self {
            Self::Route(route) => &route.upstream,
            Self::Default(upstream) => upstream,
        }
    }

    /// The route's name for logs and metrics (`-` for the default policy).
    pub fn name(&self) -> &str {
        match self {
            Self::Route(route) => &route.name,
            Self::Default(_) => "-",
        }
    }
}

/// Routes by path, then by method.
#[derive(Debug, Clone)]
pub struct RouteTable {
    router: matchit::Router<Vec<Arc<RouteConfig>>>,
}

// === impl RouteTable ===

impl RouteTable {
    /// Builds the table; on overlap returns `(later, earlier)` route indices.
    pub fn new(routes: &[Arc<RouteConfig>]) -> Result<Self, (usize, usize)> {
        // Group routes by normalized pattern; one pattern may serve disjoint method sets.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let pattern = normalize(&route.path, false);
            match groups.iter_mut().find(|(p, _)| *p == pattern) {
                Some((_, same)) => {
                    if let Some(&j) = same.iter().find(|&&j| methods_overlap(&routes[j], route)) {
                        return Err((i, j));
                    }
                    same.push(i);
                }
                None => groups.push((pattern, vec![i])),
            }
        }
        let mut router = matchit::Router::new();
        for (pattern, indices) in &groups {
            let value = indices.iter().map(|&i| Arc::clone(&routes[i])).collect();
            if let Err(e) = router.insert(pattern.clone(), value) {
                // matchit names the conflicting pattern; find the route that owns it.
                let other = match e {
                    matchit::InsertError::Conflict { with } => groups
                        .iter()
                        .find(|(p, _)| *p == with)
                        .map(|(_, idx)| idx[0]),
                    _ => None,
                };
                return Err((indices[0], other.unwrap_or(indices[0])));
            }
        }
        Ok(Self { router })
    }

    /// The route for a method and a raw request path. A route that serves GET also serves
    /// HEAD (RFC 9110 §9.3.2).
    pub fn find(&self, method: &Method, path: &str) -> Option<&Arc<RouteConfig>> {
        // Some backends read `%2F` as a separator and some do not: a route that matches
        // either reading applies.
        [normalize(path, false), normalize(path, true)]
            .iter()
            .find_map(|path| {
                self.find_normalized(method, path).or_else(|| {
                    // `/events.json` is `/events` to Rails and DRF format suffixes: when no
                    // route has the name with its extension, the route without it applies.
                    let (stem, extension) = path.rsplit_once('.')?;
                    let plain =
                        !extension.is_empty() && !extension.contains('/') && !stem.ends_with('/');
                    plain.then(|| self.find_normalized(method, stem)).flatten()
                })
            })
    }

    fn find_normalized(&self, method: &Method, path: &str) -> Option<&Arc<RouteConfig>> {
        let found = self.router.at(path).ok()?;
        found.value.iter().find(|route| {
            route
                .methods
                .as_ref()
                .is_none_or(|methods| serves(methods, method))
        })
    }
}

/// The form paths are matched in. Backends disagree on what names the same resource, so
/// matching is deliberately loose in the safe direction — every variant some backend would
/// serve as `/events` matches the `/events` route: percent-encoded unreserved characters are
/// decoded, `%2F`, `%5C` and `\` count as `/` (WSGI servers and IIS read them so),
/// `;parameters` are dropped, empty and `.` segments removed, `..` resolved, ASCII case folded,
/// and a trailing slash ignored. The request is forwarded as the client wrote it.
fn normalize(path: &str, encoded_slashes: bool) -> String {
    let lowered = decode_unreserved(path).to_ascii_lowercase();
    let slashed = if encoded_slashes {
        lowered
            .replace("%2f", "/")
            .replace("%5c", "/")
            .replace('\\', "/")
    } else {
        lowered.replace('\\', "/")
    };
    let mut segments: Vec<String> = Vec::new();
    for segment in slashed.split('/') {
        match segment.split(';').next().unwrap_or_default() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s.to_owned()),
        }
    }
    format!("/{}", segments.join("/"))
}

/// Whether a route with `methods` serves `method`: a route with GET also serves HEAD.
fn serves(methods: &[Method], method: &Method) -> bool {
    methods.contains(method) || (method == Method::HEAD && methods.contains(&Method::GET))
}

/// Whether two routes on one path could both serve a request (HEAD counts as GET).
fn methods_overlap(a: &RouteConfig, b: &RouteConfig) -> bool {
    match (&a.methods, &b.methods) {
        (Some(x), Some(y)) => x.iter().any(|m| serves(y, m)) || y.iter().any(|m| serves(x, m)),
        _ => true,
    }
}

/// Decodes `%XX` escapes of unreserved characters (ALPHA / DIGIT / `-._~`), keeps all others.
fn decode_unreserved(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains('%') {
        return path.into();
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(c) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
                && (c.is_ascii_alphanumeric() || b"-._~".contains(&c))
            {
                out.push(char::from(c));
                i += 3;
                continue;
            }
        }
        out.push(char::from(bytes[i]));
        i += 1;
    }
    out.into()
}

/// Finds each request's route and stores it in the request extensions as [`Matched`].
#[derive(Debug, Clone)]
pub struct RouteLayer {
    table: Arc<RouteTable>,
    default: DefaultPolicy,
}

impl RouteLayer {
    /// The layer for a validated config, whose route table was built during validation.
    pub fn new(config: &Config) -> Self {
        Self {
            table: Arc::clone(&config.table),
            default: config.default.clone(),
        }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Route {
            inner,
            table: Arc::clone(&self.table),
            default: self.default.clone(),
        }
    }
}

/// The service of [`RouteLayer`].
#[derive(Debug, Clone)]
pub struct Route<S> {
    inner: S,
    table: Arc<RouteTable>,
    default: DefaultPolicy,
}

impl<S> Service<Request> for Route<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let matched = match self.table.find(req.method(), req.uri().path()) {
            Some(route) => Matched::Route(Arc::clone(route)),
            None => match &self.default {
                DefaultPolicy::Pass(upstream) => Matched::Default(upstream.clone()),
                DefaultPolicy::Deny => {
                    let error = ProxyError::NoRoute {
                        method: req.method().clone(),
                        path: req.uri().path().to_owned(),
                    };
                    return Box::pin(std::future::ready(Ok(error.into_response())));
                }
            },
        };
        req.extensions_mut().insert(matched.clone());
        // A combinator, not an async block: async blocks over a generic `S::Future` trip
        // rustc's "Send is not general enough" (rust-lang/rust#110338).
        Box::pin(self.inner.call(req).map(move |result| {
            result.map(|mut response| {
                // The access log, outside this layer, reports the route.
                response.extensions_mut().insert(matched);
                response
            })
        }))
    }
}

#[cfg(test)]
mod tests;
