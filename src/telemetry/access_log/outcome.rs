//! What happened to a request ([`Outcome`]), as the access log, the metrics and the server
//! span report it.

/// What happened to a request, as the access log reports it. Layers that change a request's
/// fate put one in the response extensions; none means the backend's answer passed untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Relayed as the backend sent it.
    Passed,
    /// Relayed with a lowered page size.
    Clamped,
    /// A list response cut at its page, item count or byte bound.
    Truncated,
    /// Refused by pagegate (400, 404): the backend never saw it.
    Refused,
    /// The backend failed, timed out or sent what cannot be relayed (502, 504).
    UpstreamError,
    /// pagegate had no room for it (503).
    Overloaded,
    /// A rate or concurrency limit of its route refused it (429, 503).
    Limited,
    /// A bug in pagegate (500).
    Internal,
    /// The response body failed midway (the backend broke off or stalled).
    Aborted,
    /// The client's request body stalled (408).
    ClientStalled,
    /// The client went away before the response body ended.
    ClientClosed,
}

impl Outcome {
    /// The log field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Clamped => "clamped",
            Self::Truncated => "truncated",
            Self::Refused => "refused",
            Self::Limited => "limited",
            Self::UpstreamError => "upstream_error",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal",
            Self::Aborted => "aborted",
            Self::ClientStalled => "client_stalled",
            Self::ClientClosed => "client_closed",
        }
    }
}
