//! pagegate: a reverse proxy that keeps list APIs alive when their tables hold millions of rows.
//!
//! It sits in front of an unchanged HTTP backend and makes every list request bounded:
//! unbounded requests are rewritten into capped pages, deep offsets are refused, keyset routes get
//! signed cursors, list responses are scanned and cut at their cap, and everything else (exports,
//! uploads) streams through frame by frame.
//!
//! The request flow, outermost first (assembled in [`stack`]): a global part every request
//! crosses, then a stack built for each route when the config loads ([`generation`]).
//!
//! ```text
//! client ─▶ access log ─▶ router ─▶ rescue ─▶ [pagination ─▶ list guard] ─▶ forward ─▶ backend
//! ```
//!
//! Modules depend one way: leaves ([`body`], [`cursor`], [`problem`], [`routing`]) ←
//! mechanisms ([`config`], [`pagination`], [`guard`], [`upstream`], [`telemetry`]) ← assembly
//! ([`error`], [`route`], [`stack`], [`generation`], [`router`], [`server`], [`cli`]).

#![forbid(unsafe_code)]

mod body;
mod cli;
mod client_addr;
mod config;
mod cursor;
mod demo;
mod limit;
mod list;
mod methods;
mod problem;
mod proxy;
mod route_table;
mod server;
mod sync;
mod table;
mod telemetry;
mod upstream;

// The modules are private: what the binary, the integration tests, the benches and the fuzz
// targets use is re-exported here, so `unreachable_pub` and `missing_docs` speak of real API.
pub use body::full;
pub use cli::{Cli, main as run};
pub use client_addr::{ClientAddr, TrustedProxies};
pub use config::Config;
pub use cursor::{CursorCodec, CursorError, CursorKey, MAX_CURSOR_LEN, binding_hash, route_id};
pub use demo::postgres::{prepare as prepare_demo_table, yaml as demo_postgres_yaml};
pub use demo::{DEFAULT_ROWS, DEMO_CONFIG, serve_backend};
pub use limit::{LimitLayer, Limits};
pub use list::guard::{GuardError, HeldBudget, HoldError};
pub use list::pagination::{ListRoute, PaginationError};
pub use list::scan::{DEFAULT_MAX_DEPTH, Event, ItemsPath, ScanError, Scanner};
pub use proxy::router::{Refuse, RouteService};
pub use proxy::stack::{RouteParts, route as route_stack};
pub use server::{Handle, ReloadError, Server};
pub use telemetry::{AccessLogLayer, Metrics, Outcome, REQUEST_ID, RouteMetrics};
pub use upstream::UpstreamError;

/// The error type where services and bodies plug together.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every request and response body inside pagegate: streamed, boxed once at the edge.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;

/// A request as it travels through the stack.
pub type Request = http::Request<Body>;

/// A response as it travels through the stack.
pub type Response = http::Response<Body>;
