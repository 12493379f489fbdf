//! The upstream hop: one pool of keep-alive connections per backend ([`UpstreamClient`]), the
//! route terminal that uses it ([`Forward`]), timeouts, header rules, and bodies streamed
//! frame by frame in both directions.
//!
//! A request whose client goes away is dropped here too: hyper drops the response future (or
//! the response body), which drops the in-flight upstream exchange and closes its connection.

mod client;
pub(crate) mod config;
mod error;
mod forward;
pub(crate) mod headers;
mod pool;
mod tunnel;

pub(crate) use client::{UpstreamClient, https};
pub use error::UpstreamError;
pub(crate) use forward::Forward;
