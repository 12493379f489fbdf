//! Every error a client can see, and the one place where errors become HTTP statuses.
//!
//! Leaf errors are thiserror enums in their own modules ([`PaginationError`],
//! [`UpstreamError`], [`GuardError`], [`CursorError`]); [`ProxyError`] gathers them and
//! [`ProxyError::status`] maps each to its status. Responses are RFC 9457
//! `application/problem+json` documents whose `detail` is the error's own message, which is
//! written for the client; internal detail (socket errors, backend bodies) is logged, never sent.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use crate::cursor::CursorError;
use crate::guard::GuardError;
use crate::pagination::PaginationError;
use crate::upstream::UpstreamError;
use crate::{Body, Response};

/// Media type of every error body pagegate writes (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Any reason pagegate answers a request itself instead of relaying the backend's answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matches and the `default` policy is `deny`.
    #[error("no route matches {method} {path}")]
    NoRoute {
        /// The request method.
        method: http::Method,
        /// The request path.
        path: String,
    },
    /// The request's pagination parameters break the route's policy.
    #[error(transparent)]
    Pagination(#[from] PaginationError),
    /// The `cursor` parameter does not verify.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// The backend could not be reached or answered too slowly.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The backend's list response could not be relayed safely.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// A bug in pagegate; details are in the log.
    #[error("pagegate could not process this request")]
    Internal,
    /// Held list pages already use `max_held_bytes`.
    #[error("too many list pages are in flight right now; retry shortly")]
    Overloaded,
}

// === impl ProxyError ===

impl ProxyError {
    /// The status this error is answered with. This is the only status mapping in pagegate.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::Pagination(_) | Self::Cursor(_) => StatusCode::BAD_REQUEST,
            Self::Upstream(UpstreamError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) | Self::Guard(_) => StatusCode::BAD_GATEWAY,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable, documented problem type (see README "Errors").
    pub fn problem_type(&self) -> &'static str {
        match self {
            Self::NoRoute { .. } => "urn:pagegate:problem:no-route",
            Self::Pagination(e) => e.problem_type(),
            Self::Cursor(_) => "urn:pagegate:problem:invalid-cursor",
            Self::Upstream(UpstreamError::Timeout { .. }) => {
                "urn:pagegate:problem:upstream-timeout"
            }
            Self::Upstream(_) => "urn:pagegate:problem:upstream-unavailable",
            Self::Guard(_) => "urn:pagegate:problem:bad-upstream-response",
            Self::Overloaded => "urn:pagegate:problem:overloaded",
            Self::Internal => "urn:pagegate:problem:internal",
        }
    }

    /// The problem document for this error.
    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        let mut problem = Problem::new(status, self.problem_type(), self.to_string());
        if let Self::Pagination(e) = self {
            e.extend(&mut problem);
        }
        problem
    }

    /// The response a client receives for this error.
    pub fn into_response(self) -> Response {
        let mut response = self.to_problem().into_response();
        if matches!(self, Self::Overloaded) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// An RFC 9457 problem details document, with pagegate's extension members.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A short, human-readable summary of the problem type.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong for this request, and how to fix it.
    pub detail: String,
    /// The query parameter at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// The value the client sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The largest value the route allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<u64>,
    /// What to do instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// A URL the client can request instead (also sent as a `Link` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_page: Option<String>,
}

// === impl Problem ===

impl Problem {
    /// A problem with no extension members.
    pub fn new(status: StatusCode, kind: &'static str, detail: String) -> Self {
        Self {
            kind,
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            parameter: None,
            value: None,
            maximum: None,
            hint: None,
            first_page: None,
        }
    }

    /// Serializes the document into a response with the right status and media type.
    pub fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Serializing plain strings and numbers cannot fail; fall back to an empty object anyway.
        let json = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = http::Response::new(full(json));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(link) = self
            .first_page
            .as_deref()
            .and_then(|url| HeaderValue::from_str(&format!("<{url}>; rel=\"first\"")).ok())
        {
            headers.insert(header::LINK, link);
        }
        response
    }
}

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
