//! The answer table: how pagegate answers every error a route's stack can return, in one
//! `match` with one arm per leaf error ([`ProxyError::answer`]). Each arm gives the status, the
//! problem type, the access-log outcome, the `pagegate_protections_total` reason and the
//! headers; the leaf modules keep no mapping of their own. Adding a refusal means adding its
//! leaf error and one arm here.

use std::time::Duration;

use http::{HeaderValue, StatusCode, header};

use crate::body::RequestBodyError;
use crate::config::defaults::OVERLOADED_RETRY_AFTER;
use crate::cursor::CursorError;
use crate::identity::IdentityError;
use crate::limit::LimitError;
use crate::list::guard::{GuardError, HoldError};
use crate::list::pagination::{PaginationError, PlanError};
use crate::methods::MethodError;
use crate::problem::Problem;
use crate::route_table::{AmbiguousPath, BadHost, DotPath, NoRoute, NulPath};
use crate::table::PgError;
use crate::telemetry::Outcome;
use crate::upstream::UpstreamError;
use crate::{BoxError, Response};

/// The prefix of every problem type pagegate writes.
pub(crate) const PROBLEM_PREFIX: &str = "urn:pagegate:problem:";

/// A problem type: `kind!("no-route")` is `urn:pagegate:problem:no-route`.
macro_rules! kind {
    ($name:literal) => {
        concat!("urn:pagegate:problem:", $name)
    };
}

/// The methods a 405 for CONNECT lists (RFC 9110 §15.5.6).
const ALLOW_PROXIED: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// The methods a table route answers.
const ALLOW_TABLE: &str = "GET, HEAD";

/// Any reason pagegate answers a request itself instead of relaying the backend's answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// No route matches and the `default` policy is `deny`.
    #[error(transparent)]
    NoRoute(#[from] NoRoute),
    /// The path holds a NUL byte.
    #[error(transparent)]
    Path(#[from] NulPath),
    /// The path holds a segment backends read differently: a dot segment, or one the router
    /// drops.
    #[error(transparent)]
    DotPath(#[from] DotPath),
    /// The path's `%2F` finds one route read as a separator and another read as written.
    #[error(transparent)]
    AmbiguousPath(#[from] AmbiguousPath),
    /// The `Host` is not a host name with an optional port.
    #[error(transparent)]
    Host(#[from] BadHost),
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
    /// Held list pages already use `max_held_bytes`.
    #[error(transparent)]
    Overloaded(#[from] HoldError),
    /// The client's request body stalled or is malformed.
    #[error(transparent)]
    RequestBody(#[from] RequestBodyError),
    /// The method could be read differently by the backend, or is CONNECT.
    #[error(transparent)]
    Method(#[from] MethodError),
    /// A rate or concurrency limit of the route.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A table route's request or its database.
    #[error(transparent)]
    Table(#[from] PgError),
    /// A route that reads a claim, and a request without a good token.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Every `max_connections` slot stayed busy while this client's connection waited.
    #[error("pagegate is serving as many connections as it may; retry shortly")]
    ConnectionsFull,
    /// A bug in pagegate; details are in the log.
    #[error("pagegate could not process this request")]
    Internal,
}

/// One row of the answer table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The response status.
    pub(crate) status: StatusCode,
    /// The problem type, `urn:pagegate:problem:<name>` (docs/configuration.md lists them).
    pub(crate) kind: &'static str,
    /// What the access log reports.
    pub(crate) outcome: Outcome,
    /// The `pagegate_protections_total` reason, for refusals that protect pagegate or the
    /// backend (not for ordinary bad parameters or upstream failures).
    pub(crate) protection: Option<&'static str>,
    /// `Retry-After`, in seconds.
    pub(crate) retry_after: Option<u64>,
    /// `Allow`, on a 405.
    pub(crate) allow: Option<&'static str>,
    /// `Connection: close`: the connection ends after this answer (HTTP/2 gets GOAWAY).
    pub(crate) close: bool,
    /// `WWW-Authenticate`, on a 401.
    pub(crate) authenticate: Option<&'static str>,
    /// `Accept-Encoding`, on a 415 for a compressed body (RFC 7694 §3).
    pub(crate) accept_encoding: Option<&'static str>,
}

/// A row with no protection reason and no extra header.
fn row(status: StatusCode, kind: &'static str, outcome: Outcome) -> Answer {
    Answer {
        status,
        kind,
        outcome,
        protection: None,
        retry_after: None,
        allow: None,
        close: false,
        authenticate: None,
        accept_encoding: None,
    }
}

impl Answer {
    fn protects(self, reason: &'static str) -> Self {
        Self {
            protection: Some(reason),
            ..self
        }
    }

    fn retry(self, after: Duration) -> Self {
        Self {
            retry_after: Some(after.as_secs()),
            ..self
        }
    }

    fn allow(self, methods: &'static str) -> Self {
        Self {
            allow: Some(methods),
            ..self
        }
    }
}

// === impl ProxyError ===

impl From<PlanError> for ProxyError {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::Pagination(e) => e.into(),
            PlanError::Cursor(e) => e.into(),
        }
    }
}

impl ProxyError {
    /// Sorts a boxed error from a route's stack. An error of no known type is a bug: it is
    /// logged and answered 500 without its text.
    pub(crate) fn from_boxed(error: BoxError) -> Self {
        let error = match error.downcast::<PlanError>() {
            Ok(plan) => return (*plan).into(),
            Err(error) => error,
        };
        macro_rules! sort {
            ($error:ident: $($leaf:ty),*) => {
                $(let $error = match $error.downcast::<$leaf>() {
                    Ok(leaf) => return (*leaf).into(),
                    Err(other) => other,
                };)*
            };
        }
        sort!(error: NoRoute, NulPath, DotPath, AmbiguousPath, BadHost, PaginationError, CursorError, UpstreamError, GuardError, HoldError, MethodError, RequestBodyError, LimitError, PgError, IdentityError);
        tracing::error!(%error, "unexpected error in a route's stack");
        Self::Internal
    }

    /// The cursor that was refused, from a list route or a table route.
    pub(crate) fn cursor(&self) -> Option<&CursorError> {
        match self {
            Self::Cursor(e) | Self::Table(PgError::Cursor(e)) => Some(e),
            _ => None,
        }
    }

    /// The answer table.
    pub(crate) fn answer(&self) -> Answer {
        use Outcome::{Internal, Overloaded, Refused, UpstreamError as Upstream};
        use StatusCode as S;
        match self {
            Self::NoRoute(_) => row(S::NOT_FOUND, kind!("no-route"), Refused),
            Self::Path(_) | Self::DotPath(_) | Self::AmbiguousPath(_) => {
                row(S::BAD_REQUEST, kind!("invalid-path"), Refused)
            }
            Self::Host(_) => row(S::BAD_REQUEST, kind!("invalid-host"), Refused),
            Self::Method(e) => method(e),
            Self::RequestBody(RequestBodyError::Stalled(_)) => row(
                S::REQUEST_TIMEOUT,
                kind!("request-body-stalled"),
                Outcome::ClientStalled,
            )
            .protects("request_body_stalled"),
            Self::RequestBody(RequestBodyError::Malformed) => {
                row(S::BAD_REQUEST, kind!("malformed-request-body"), Refused)
                    .protects("request_body_malformed")
            }
            Self::RequestBody(RequestBodyError::Aborted) => row(
                S::BAD_REQUEST,
                kind!("incomplete-request-body"),
                Outcome::ClientClosed,
            ),
            Self::Pagination(e) => row(S::BAD_REQUEST, pagination_kind(e), Refused),
            Self::Cursor(_) => row(S::BAD_REQUEST, kind!("invalid-cursor"), Refused),
            Self::Upstream(UpstreamError::Timeout { .. }) => {
                row(S::GATEWAY_TIMEOUT, kind!("upstream-timeout"), Upstream)
            }
            Self::Upstream(UpstreamError::UnaskedUpgrade { .. }) => {
                row(S::BAD_GATEWAY, kind!("upstream-unavailable"), Upstream)
                    .protects("unasked_upgrade")
            }
            Self::Upstream(_) => row(S::BAD_GATEWAY, kind!("upstream-unavailable"), Upstream),
            Self::Guard(GuardError::Unfinished) => {
                row(S::BAD_GATEWAY, kind!("bad-upstream-response"), Upstream)
                    .protects("unfinished_list")
            }
            Self::Guard(_) => row(S::BAD_GATEWAY, kind!("bad-upstream-response"), Upstream),
            Self::Overloaded(e) => row(S::SERVICE_UNAVAILABLE, kind!("overloaded"), Overloaded)
                .protects(match e {
                    HoldError::Busy => "held_bytes",
                    HoldError::ClientShare { .. } => "held_bytes_per_client",
                })
                .retry(OVERLOADED_RETRY_AFTER),
            Self::ConnectionsFull => Answer {
                close: true,
                ..row(S::SERVICE_UNAVAILABLE, kind!("overloaded"), Overloaded)
                    .retry(OVERLOADED_RETRY_AFTER)
            },
            Self::Limit(e) => limit(e),
            Self::Table(e) => table(e),
            Self::Identity(e) => identity(e),
            Self::Internal => row(S::INTERNAL_SERVER_ERROR, kind!("internal"), Internal),
        }
    }

    /// The problem document for this error, as `answer` describes it.
    fn problem(&self, answer: &Answer) -> Problem {
        // An upstream's name is the operator's, not the client's: logged, never sent.
        let detail = match self {
            Self::Upstream(e) => e.for_client(),
            _ => self.to_string(),
        };
        let mut problem = Problem::new(answer.status, answer.kind, detail);
        if let Self::Pagination(e) = self {
            e.extend(&mut problem);
        }
        problem
    }

    /// The response a client receives for this error.
    pub(crate) fn into_response(self) -> Response {
        let answer = self.answer();
        let mut response = self.problem(&answer).into_response();
        let headers = response.headers_mut();
        if let Some(after) = answer.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(after));
        }
        if let Some(methods) = answer.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(methods));
        }
        if answer.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(codings) = answer.accept_encoding {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(codings));
        }
        if let Some(challenge) = answer.authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Self::Limit(LimitError {
            fields: Some(fields),
            ..
        }) = &self
        {
            headers.insert("ratelimit-policy", fields.policy.clone());
            headers.insert("ratelimit", fields.state.clone());
        }
        response.extensions_mut().insert(answer.outcome);
        response
    }
}

mod rows;

use rows::{identity, limit, method, pagination_kind, table};
