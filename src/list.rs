//! List routes in front of an HTTP backend, in the order a request meets them:
//!
//! 1. [`pagination`] turns any list request into a bounded page before it reaches the backend
//!    (a capped `limit`, no deep offset, a keyset cursor read back into the backend's own
//!    parameters);
//! 2. [`guard`] holds the answer under `max_bytes`, cuts it at its cap and mints the next
//!    cursor, using [`scan`] to find the items of the JSON array as they stream.
//!
//! [`config`] is the typed policy of one route (`routes[].list`).

pub(crate) mod config;
pub(crate) mod guard;
pub(crate) mod pagination;
pub(crate) mod scan;
