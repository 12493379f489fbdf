//! Why the upstream did not answer ([`UpstreamError`]), and reading the errors of an upstream
//! exchange: a timeout, a request body the client stalled or broke, a form scan that refused it.

use std::time::Duration;

use crate::body::{IdleTimeoutError, RequestBodyError};

/// Why the upstream did not answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connection refused, reset, or the exchange failed before a response head.
    #[error("upstream `{upstream}` is unavailable")]
    Unavailable {
        /// The upstream.
        upstream: String,
    },
    /// The upstream answered `101 Switching Protocols` to a request that asked for no upgrade
    /// (pagegate removes `Upgrade`): relaying it would hand the client a connection in a
    /// protocol nobody negotiated.
    #[error("upstream `{upstream}` switched protocols without being asked to")]
    UnaskedUpgrade {
        /// The upstream.
        upstream: String,
    },
    /// Connecting or waiting for the response head took too long.
    #[error("upstream `{upstream}` did not {stage} within {after:?}")]
    Timeout {
        /// The upstream.
        upstream: String,
        /// `accept a connection` or `answer`.
        stage: &'static str,
        /// The configured limit.
        after: Duration,
    },
}

impl UpstreamError {
    /// What a client is told: the message without the upstream's name.
    pub(crate) fn for_client(&self) -> String {
        match self {
            Self::Unavailable { .. } => "the upstream is unavailable".to_owned(),
            Self::UnaskedUpgrade { .. } => {
                "the upstream switched protocols without being asked to".to_owned()
            }
            Self::Timeout { stage, after, .. } => {
                format!("the upstream did not {stage} within {after:?}")
            }
        }
    }
}

/// The method refusal behind an upstream exchange's error: a form body whose scan refused it.
pub(super) fn method_error(
    error: &(dyn std::error::Error + 'static),
) -> Option<crate::methods::MethodError> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(refusal) = e.downcast_ref::<crate::methods::MethodError>() {
            return Some(refusal.clone());
        }
        source = e.source();
    }
    None
}

/// The client's request-body failure behind an upstream exchange's error, if that is what
/// failed it: a stall (our idle timeout on the body) or malformed chunking.
pub(super) fn request_body_error(
    error: &(dyn std::error::Error + 'static),
) -> Option<RequestBodyError> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(idle) = e.downcast_ref::<IdleTimeoutError>() {
            return Some(RequestBodyError::Stalled(idle.0));
        }
        if let Some(body) = e.downcast_ref::<RequestBodyError>() {
            return Some(body.clone());
        }
        source = e.source();
    }
    None
}

/// Whether a connect error is the connector's timeout (hyper-util reports it as an
/// `io::ErrorKind::TimedOut` in the source chain).
pub(super) fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Why an exchange failed before a response head, as `pagegate_upstream_errors_total` and the
/// log line name it.
pub(super) fn cause(error: &super::pool::SendError) -> &'static str {
    if error.is_malformed() {
        return "malformed_answer";
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return "connect_refused",
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => return "reset",
                _ => {}
            }
        }
        if error.is_connect() && e.to_string().starts_with("dns error") {
            return "dns";
        }
        source = e.source();
    }
    if error.is_connect() {
        "connect"
    } else {
        "closed"
    }
}
