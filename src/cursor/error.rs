//! Why a cursor was refused ([`CursorError`]), in words for the HTTP client.

use super::CURSOR_VERSION;

/// Why a cursor was refused. Messages are written for the HTTP client: they carry no secrets.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    /// The cursor exceeds [`MAX_CURSOR_LEN`](super::MAX_CURSOR_LEN); it was not decoded.
    #[error("cursor is {len} bytes long; the maximum is {max}")]
    TooLong {
        /// Length of the cursor sent.
        len: usize,
        /// [`MAX_CURSOR_LEN`](super::MAX_CURSOR_LEN).
        max: usize,
    },
    /// The cursor is not unpadded base64url.
    #[error("cursor is not base64url (RFC 4648 §5) without padding")]
    NotBase64,
    /// The cursor is shorter than any cursor pagegate mints.
    #[error("cursor is truncated: send the whole cursor from the next-page link")]
    Truncated,
    /// The cursor has a format version this pagegate does not read.
    #[error("cursor has format version {0}; this pagegate reads version {CURSOR_VERSION}")]
    UnsupportedVersion(u8),
    /// The cursor's key id is not configured (any more).
    #[error("cursor was signed with key id {0}, which is no longer configured")]
    UnknownKeyId(u8),
    /// The tag does not match the content.
    #[error("cursor signature does not verify: it was modified or minted by another pagegate")]
    BadSignature,
    /// The cursor's lifetime is over.
    #[error("cursor expired at {expired_at} (unix seconds); start again without a cursor")]
    Expired {
        /// When it expired, in unix seconds.
        expired_at: u64,
    },
    /// The cursor was minted under a longer `ttl`, or none, than the one in force.
    #[error(
        "cursor was issued before this route's cursors got their lifetime; start again without a cursor"
    )]
    Outlived,
    /// The cursor was minted by another route, or before this route's keyset changed.
    #[error(
        "cursor was issued for another route, or for this route's earlier key, order or parameters (or by an earlier pagegate); start again without a cursor"
    )]
    WrongRoute,
    /// The request's other query parameters differ from those the cursor was minted for.
    #[error(
        "cursor was issued for different query parameters; send the same filters as the first page or start without a cursor"
    )]
    WrongFilters,
    /// The signed key values do not fit the route's key (its key fields changed since minting).
    #[error(
        "cursor does not hold the {expected} key value(s) this route pages by; start again without a cursor"
    )]
    BadKey {
        /// How many scalar key values the route expects.
        expected: usize,
    },
}

impl CursorError {
    /// The reason's label in `pagegate_cursor_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLong { .. } => "too_long",
            Self::NotBase64 => "not_base64",
            Self::Truncated => "truncated",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::UnknownKeyId(_) => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired { .. } | Self::Outlived => "expired",
            Self::WrongRoute => "wrong_route",
            Self::WrongFilters => "wrong_filters",
            Self::BadKey { .. } => "bad_key",
        }
    }
}
