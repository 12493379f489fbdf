//! The answer table's rows, and the rules every row keeps.

use std::time::Duration;

use http::{Method, StatusCode, header};

use super::*;
use crate::body::RequestBodyError;
use crate::cursor::CursorError;
use crate::identity::IdentityError;
use crate::list::guard::{GuardError, HoldError};
use crate::list::pagination::PaginationError;
use crate::methods::MethodError;
use crate::route_table::{AmbiguousPath, BadHost, DotPath, NoRoute, NulPath};
use crate::table::PgError;
use crate::telemetry::Outcome;

/// One error of (nearly) every row.
fn samples() -> Vec<ProxyError> {
    vec![
        NoRoute {
            method: Method::GET,
            path: "/x".to_owned(),
        }
        .into(),
        NulPath.into(),
        DotPath.into(),
        AmbiguousPath.into(),
        BadHost.into(),
        PaginationError::Zero {
            param: "limit".to_owned(),
        }
        .into(),
        CursorError::NotBase64.into(),
        GuardError::Unfinished.into(),
        HoldError::Busy.into(),
        HoldError::ClientShare { share: 1 }.into(),
        RequestBodyError::Stalled(Duration::from_secs(1)).into(),
        RequestBodyError::Malformed.into(),
        RequestBodyError::Aborted.into(),
        MethodError::Connect.into(),
        PgError::Method(Method::POST).into(),
        PgError::NoExport.into(),
        PgError::Unavailable.into(),
        PgError::OutOfService.into(),
        PgError::Changed.into(),
        PgError::Timeout.into(),
        PgError::Database.into(),
        PgError::BadRequest("bad".to_owned()).into(),
        IdentityError::Missing(http::header::AUTHORIZATION).into(),
        IdentityError::Invalid.into(),
        IdentityError::LacksClaim.into(),
        IdentityError::Throttled(3).into(),
        IdentityError::KeysUnavailable.into(),
        ProxyError::ConnectionsFull,
        ProxyError::Internal,
    ]
}

#[test]
fn every_row_keeps_the_rules() {
    for error in samples() {
        let answer = error.answer();
        // A leaf error is sorted from its box, as it comes out of a stack.
        let response = match error {
            ProxyError::ConnectionsFull | ProxyError::Internal => error.into_response(),
            leaf => ProxyError::from_boxed(leaf.into_boxed()).into_response(),
        };
        let headers = response.headers();
        assert_eq!(response.status(), answer.status, "{answer:?}");
        assert!(answer.kind.starts_with(PROBLEM_PREFIX), "{answer:?}");
        // A client error is the client's: refused, stalled or limited; never upstream_error.
        if answer.status.is_client_error() {
            assert!(
                matches!(
                    answer.outcome,
                    Outcome::Refused
                        | Outcome::ClientStalled
                        | Outcome::ClientClosed
                        | Outcome::Limited
                ),
                "{answer:?}"
            );
        }
        // Every 503 says when to retry; every 405 says what is allowed (RFC 9110 §15.5.6).
        if answer.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(headers.contains_key(header::RETRY_AFTER), "{answer:?}");
        }
        if answer.status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(headers.contains_key(header::ALLOW), "{answer:?}");
        }
        assert_eq!(
            response.extensions().get::<Outcome>(),
            Some(&answer.outcome)
        );
    }
}

#[test]
fn rows_that_differ_by_variant() {
    let row = |e: ProxyError| {
        let a = e.answer();
        (
            a.status.as_u16(),
            a.kind.trim_start_matches(PROBLEM_PREFIX),
            a.protection,
        )
    };
    assert_eq!(
        row(HoldError::ClientShare { share: 1 }.into()),
        (503, "overloaded", Some("held_bytes_per_client"))
    );
    assert_eq!(
        row(MethodError::Connect.into()),
        (405, "method-not-allowed", Some("connect"))
    );
    assert_eq!(row(PgError::OutOfService.into()).0, 503);
    assert_eq!(
        PgError::OutOfService.into_proxy().answer().retry_after,
        Some(crate::table::RETRY_INVALID.as_secs())
    );
    assert_eq!(
        PgError::Unavailable.into_proxy().answer().retry_after,
        Some(crate::table::RETRY_UNREACHABLE.as_secs())
    );
    assert!(ProxyError::ConnectionsFull.answer().close);
    // RFC 6750 §3.1: no error code without a token; `invalid_token` for a bad one.
    let challenge = |e: IdentityError| ProxyError::from(e).answer().authenticate;
    let missing = IdentityError::Missing(http::header::AUTHORIZATION);
    assert_eq!(challenge(missing), Some("Bearer"));
    assert_eq!(
        challenge(IdentityError::Invalid),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert_eq!(
        challenge(IdentityError::LacksClaim),
        Some(r#"Bearer error="insufficient_scope""#)
    );
    assert_eq!(row(IdentityError::LacksClaim.into()).0, 403);
    assert_eq!(row(IdentityError::KeysUnavailable.into()).0, 503);
    assert_eq!(row(ProxyError::Internal), (500, "internal", None));
}

trait IntoProxy {
    fn into_proxy(self) -> ProxyError;
}

impl IntoProxy for PgError {
    fn into_proxy(self) -> ProxyError {
        self.into()
    }
}

impl ProxyError {
    /// Boxes a sorted error again, as a leaf error travels up a stack.
    fn into_boxed(self) -> crate::BoxError {
        match self {
            Self::NoRoute(e) => e.into(),
            Self::Path(e) => e.into(),
            Self::DotPath(e) => e.into(),
            Self::AmbiguousPath(e) => e.into(),
            Self::Host(e) => e.into(),
            Self::Pagination(e) => e.into(),
            Self::Cursor(e) => e.into(),
            Self::Upstream(e) => e.into(),
            Self::Guard(e) => e.into(),
            Self::Overloaded(e) => e.into(),
            Self::RequestBody(e) => e.into(),
            Self::Method(e) => e.into(),
            Self::Limit(e) => e.into(),
            Self::Table(e) => e.into(),
            Self::Identity(e) => e.into(),
            Self::ConnectionsFull | Self::Internal => unreachable!("not a leaf error"),
        }
    }
}
