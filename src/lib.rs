//! pagegate: a reverse proxy that keeps list APIs alive when their tables hold millions of rows.
//!
//! It sits in front of an unchanged HTTP backend and makes every list request bounded:
//! unbounded requests are rewritten into capped pages, deep offsets are refused, keyset routes get
//! signed cursors, list responses are scanned and cut at their cap, and everything else (exports,
//! uploads) streams through frame by frame.
//!
//! The request flow, outermost first (every route kind is assembled in [`proxy::stack`]): a
//! global part every request crosses, then a stack built for each route when the config loads
//! ([`proxy::generation`]). `docs/ARCHITECTURE.md` is the map.
//!
//! ```text
//! server ─▶ access log ─▶ router ─▶ rescue ─▶ [limits] ─▶ method check ─▶ route terminal
//!   list route:    pagination ─▶ list guard ─▶ upstream ─▶ backend
//!   plain route:   upstream ─▶ backend (WebSocket tunnels included)
//!   table route:   page query | compression ─▶ export stream ─▶ PostgreSQL
//! ```
//!
//! Modules depend one way, down these tiers (`tests/it/layout.rs` checks it): leaves ([`body`],
//! [`problem`], [`client_addr`], [`cursor`], [`telemetry`], [`route_table`], [`sync`], and
//! [`config::file`], [`config::problems`], [`config::defaults`]) ← features, each with its typed
//! config ([`list`], [`limit`], [`table`], [`upstream`], [`methods`]) ← [`config`] loading ←
//! [`proxy`] ← [`server`] ← [`demo`], [`cli`].

#![forbid(unsafe_code)]
// The docs are built with private items (`cargo doc --document-private-items`): they are for
// the people who work on pagegate, whose links point into private modules.
#![allow(rustdoc::private_intra_doc_links)]

mod body;
mod cli;
mod client_addr;
mod config;
mod cursor;
mod demo;
mod http1;
mod identity;
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
mod tls;
mod upstream;

// The modules are private: what the binary, the integration tests, the benches and the fuzz
// targets use is re-exported here, so `unreachable_pub` and `missing_docs` speak of real API.
pub use body::full;
pub use cli::{Cli, main as run};
pub use client_addr::{ClientAddr, TrustedProxies};
pub use config::Config;
pub use cursor::{
    CursorCodec, CursorError, CursorKey, MAX_CURSOR_LEN, binding_hash, keyset_id, route_id,
};
pub use demo::postgres::{prepare as prepare_demo_table, yaml as demo_postgres_yaml};
pub use demo::{DEFAULT_ROWS, DEMO_CONFIG, serve_backend};
pub use limit::{LimitLayer, Limits};
pub use list::config::ListPolicy;
pub use list::guard::{GuardError, HeldBudget, HoldError};
pub use list::pagination::PaginationError;
pub use list::scan::{DEFAULT_MAX_DEPTH, Event, ItemsPath, ScanError, Scanner};
pub use proxy::router::{Refuse, RouteService};
pub use proxy::stack::{RouteParts, route as route_stack};
pub use server::{Handle, Overrides, ReloadError, Server, Source};
pub use telemetry::{
    AccessLogLayer, Metrics, Outcome, REQUEST_ID, RouteMetrics, Traces, TracesError,
};
pub use upstream::UpstreamError;

/// The error type where services and bodies plug together.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every request and response body inside pagegate: streamed, boxed once at the edge.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;

/// A request as it travels through the stack.
pub type Request = http::Request<Body>;

/// A response as it travels through the stack.
pub type Response = http::Response<Body>;
