//! The answer table's rows for each feature's leaf errors: method checks, pagination, route
//! limits, the identity gate, and table routes.

use std::time::Duration;

use http::StatusCode;

use super::{ALLOW_PROXIED, ALLOW_TABLE, Answer, row};
use crate::identity::IdentityError;
use crate::limit::{LimitError, Refusal};
use crate::list::pagination::PaginationError;
use crate::methods::MethodError;
use crate::table::{PgError, RETRY_INVALID, RETRY_UNREACHABLE};
use crate::telemetry::Outcome;

/// The rows of the method checks.
pub(super) fn method(e: &MethodError) -> Answer {
    use StatusCode as S;
    let refused = |status, kind, reason| row(status, kind, Outcome::Refused).protects(reason);
    match e {
        MethodError::Connect => refused(
            S::METHOD_NOT_ALLOWED,
            kind!("method-not-allowed"),
            "connect",
        )
        .allow(ALLOW_PROXIED),
        MethodError::FormTooLarge { .. } => refused(
            S::PAYLOAD_TOO_LARGE,
            kind!("form-too-large"),
            "form_too_large",
        ),
        MethodError::NonCanonical { .. } => {
            refused(S::BAD_REQUEST, kind!("ambiguous-method"), "method_case")
        }
        MethodError::Override { .. } => {
            refused(S::BAD_REQUEST, kind!("ambiguous-method"), "method_override")
        }
        MethodError::AmbiguousType => {
            refused(S::BAD_REQUEST, kind!("ambiguous-method"), "ambiguous_type")
        }
        MethodError::EncodedBody => Answer {
            accept_encoding: Some("identity"),
            ..refused(
                S::UNSUPPORTED_MEDIA_TYPE,
                kind!("encoded-body"),
                "encoded_body",
            )
        },
        MethodError::BodyOnRead { .. } => {
            refused(S::BAD_REQUEST, kind!("ambiguous-method"), "body_on_read")
        }
        MethodError::UpgradeOnList { .. } => {
            refused(S::BAD_REQUEST, kind!("ambiguous-method"), "upgrade_on_list")
        }
    }
}

/// The problem type of a pagination refusal.
pub(super) fn pagination_kind(e: &PaginationError) -> &'static str {
    match e {
        PaginationError::LimitTooLarge { .. } => kind!("limit-too-large"),
        PaginationError::OffsetTooDeep { .. } => kind!("offset-too-deep"),
        PaginationError::Reserved { .. } => kind!("reserved-parameter"),
        _ => kind!("invalid-pagination-parameter"),
    }
}

/// The rows of the route limits: a client's own limit is 429, the route's total 503.
pub(super) fn limit(e: &LimitError) -> Answer {
    let status = if e.route_busy() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    let kind = match e.refusal {
        Refusal::Rate(_) => kind!("rate-limited"),
        Refusal::Concurrency(_) => kind!("concurrency-limited"),
        Refusal::Unavailable(_) => kind!("limits-unavailable"),
        Refusal::Quota(_) => kind!("quota-exceeded"),
    };
    Answer {
        retry_after: Some(e.retry_after()),
        ..row(status, kind, Outcome::Limited)
    }
}

/// The rows of the identity gate. RFC 6750 §3.1: a request with no token gets the bare
/// challenge, one with a bad token `error="invalid_token"`; keys not fetched yet are pagegate's
/// side, 503.
pub(super) fn identity(e: &IdentityError) -> Answer {
    use StatusCode as S;
    let unauthorized = |kind, challenge| Answer {
        authenticate: Some(challenge),
        ..row(S::UNAUTHORIZED, kind, Outcome::Refused)
    };
    match e {
        IdentityError::Missing(_) => unauthorized(kind!("unauthenticated"), "Bearer"),
        IdentityError::Invalid => {
            unauthorized(kind!("invalid-token"), r#"Bearer error="invalid_token""#)
        }
        // RFC 6750 §3.1: a token that verified but does not carry what the route needs.
        IdentityError::LacksClaim => Answer {
            authenticate: Some(r#"Bearer error="insufficient_scope""#),
            ..row(S::FORBIDDEN, kind!("missing-claim"), Outcome::Refused)
        },
        // Limited, not refused: the client's address sent too many bad tokens lately.
        IdentityError::Throttled(seconds) => row(
            S::TOO_MANY_REQUESTS,
            kind!("too-many-bad-tokens"),
            Outcome::Limited,
        )
        .retry(Duration::from_secs(*seconds)),
        IdentityError::KeysUnavailable => row(
            S::SERVICE_UNAVAILABLE,
            kind!("identity-unavailable"),
            Outcome::Overloaded,
        )
        .retry(RETRY_KEYS),
    }
}

/// `Retry-After` while an identity's keys are not fetched yet (the fetch is retried every
/// 10 s).
const RETRY_KEYS: Duration = Duration::from_secs(10);

/// The rows of the table routes.
pub(super) fn table(e: &PgError) -> Answer {
    use Outcome::{Refused, UpstreamError as Upstream};
    use StatusCode as S;
    match e {
        PgError::BadRequest(_) | PgError::BadValue { .. } | PgError::Rejected => {
            row(S::BAD_REQUEST, kind!("invalid-query"), Refused)
        }
        PgError::Cursor(_) => row(S::BAD_REQUEST, kind!("invalid-cursor"), Refused),
        PgError::NoExport => row(S::NOT_FOUND, kind!("no-route"), Refused),
        PgError::Method(_) => {
            row(S::METHOD_NOT_ALLOWED, kind!("method-not-allowed"), Refused).allow(ALLOW_TABLE)
        }
        PgError::ScopeRequired(_) => row(S::FORBIDDEN, kind!("scope-required"), Refused),
        // An unfit table is checked again every RETRY_INVALID; an unreachable database or a
        // changed table at the next request after RETRY_UNREACHABLE.
        PgError::OutOfService => row(
            S::SERVICE_UNAVAILABLE,
            kind!("database-unavailable"),
            Upstream,
        )
        .retry(RETRY_INVALID),
        PgError::Unavailable | PgError::Changed => row(
            S::SERVICE_UNAVAILABLE,
            kind!("database-unavailable"),
            Upstream,
        )
        .retry(RETRY_UNREACHABLE),
        PgError::Timeout => row(S::GATEWAY_TIMEOUT, kind!("database-timeout"), Upstream),
        PgError::KeyTooLong { .. } => {
            row(S::INTERNAL_SERVER_ERROR, kind!("key-too-long"), Upstream)
        }
        PgError::Database => row(S::INTERNAL_SERVER_ERROR, kind!("internal"), Upstream),
    }
}
