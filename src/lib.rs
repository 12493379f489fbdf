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

pub mod body;
pub mod cli;
pub mod client_addr;
pub mod config;
pub mod cursor;
pub mod demo;
pub mod limit;
pub mod list;
pub mod methods;
pub mod problem;
pub mod proxy;
pub mod route_table;
pub mod server;
mod sync;
pub mod table;
pub mod telemetry;
pub mod upstream;

/// The error type where services and bodies plug together.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every request and response body inside pagegate: streamed, boxed once at the edge.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;

/// A request as it travels through the stack.
pub type Request = http::Request<Body>;

/// A response as it travels through the stack.
pub type Response = http::Response<Body>;
