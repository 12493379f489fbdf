//! RFC 9457 problem details documents: the body of every answer pagegate writes itself.
//!
//! A leaf module: error types elsewhere fill a [`Problem`]; [`crate::proxy::rescue`] decides statuses.

use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::Response;

/// Media type of every error body pagegate writes (RFC 9457 §3).
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details document, with pagegate's extension members.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Problem {
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
    pub(crate) fn new(status: StatusCode, kind: &'static str, detail: String) -> Self {
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
    pub(crate) fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Serializing plain strings and numbers cannot fail; fall back to an empty object anyway.
        let json = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = http::Response::new(crate::body::full(json));
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
