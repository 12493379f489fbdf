//! The list guard: no list response through pagegate exceeds its cap, whatever the backend sends.
//!
//! On a list route, a successful GET response is held — at most `max_bytes`, the only buffering
//! pagegate does — while a byte-level [`Scanner`](crate::list::scan::Scanner) finds the item boundaries of the list. Holding
//! the page is what lets the response head say what happened to the body: response headers
//! leave before the body, so a `Link` to the next page or a truncation notice can only be
//! written once the page's end is known.
//!
//! * More items than the page size, or more bytes than `max_bytes`: the body is cut after the
//!   last whole item that fits, the JSON is closed, `Pagegate-Truncated` says why, and the
//!   upstream connection is dropped rather than drained or pooled.
//! * Keyset routes ask the backend for one item more than the page size; when it comes, it is
//!   dropped and its presence proves a next page exists: `Link: <…?cursor=…>; rel="next"`.
//!   The last page has no `next` link, so no client fetches an empty page.
//! * Keys must strictly follow the route's order; a backend that breaks it would make cursors
//!   skip rows, so the response becomes a 502 instead.

mod budget;
mod cut;
mod error;
mod held;
mod hold;
mod keys;
mod layer;
mod report;

pub(crate) use budget::Reservation;
pub use budget::{HeldBudget, HoldError};
pub use error::GuardError;
pub(crate) use held::{HeldBody, Sending};
pub(crate) use layer::ListGuardLayer;
pub(crate) use report::ReportBody;

/// Response header on a cut list: `items` (more items than the page) or `bytes` (over `max_bytes`).
pub(crate) const TRUNCATED_HEADER: &str = "pagegate-truncated";

#[cfg(test)]
mod tests;
