//! Why a list response could not be relayed ([`GuardError`]): each is answered 502.

/// Why a list response could not be relayed (502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The response is not JSON (or not the configured shape) and the route refuses that.
    #[error("the backend's list response is not the JSON list this route expects")]
    NotJson,
    /// Not JSON and larger than the page bound: it cannot be relayed whole.
    #[error(
        "the backend's list response is not JSON and exceeds this route's {max_bytes}-byte bound"
    )]
    NotJsonTooLarge {
        /// `max_bytes`.
        max_bytes: u64,
    },
    /// Not one whole item fits in `max_bytes`.
    #[error("not one whole item of the backend's list fits in this route's {max_bytes}-byte bound")]
    ItemTooLarge {
        /// `max_bytes`.
        max_bytes: u64,
    },
    /// An item lacks its key field.
    #[error("item {index} of the backend's list has no usable key at {field}")]
    MissingKey {
        /// 0-based item index.
        index: usize,
        /// JSON pointer.
        field: String,
    },
    /// Keys are not in the route's order.
    #[error(
        "the backend returned item {index} out of key order; refusing to mint a cursor that would skip rows"
    )]
    OrderViolation {
        /// 0-based index of the offending item.
        index: usize,
    },
    /// The last item's key is too long to fit in a cursor.
    #[error("the key of item {index} is longer than a cursor can carry ({max} bytes of JSON)")]
    KeyTooLong {
        /// 0-based item index.
        index: usize,
        /// [`crate::cursor::MAX_KEY_JSON_LEN`].
        max: usize,
    },
    /// The upstream body failed before the page was complete.
    #[error("the backend's list response ended abnormally")]
    Body,
    /// The body ended before its JSON document did.
    #[error("the backend's list response ended before its JSON document did")]
    Unfinished,
    /// The backend compressed the page although asked not to: its items cannot be counted.
    /// (Its `Content-Encoding` is logged, not told to the client.)
    #[error(
        "the backend's list response is compressed although pagegate asked for identity, so its items cannot be counted"
    )]
    Encoded,
}
