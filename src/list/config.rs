//! The typed pagination policy of a list route (`routes[].list`): page sizes and offsets,
//! the guard's caps, and keyset cursors. `config::load` builds it from the file.

use std::sync::Arc;

use crate::cursor::CursorCodec;
use crate::list::scan::ItemsPath;

/// How a route answers a request that breaks its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnViolation {
    /// 400 problem+json.
    Reject,
    /// Forward the largest allowed value and say so in `Pagegate-Clamped`.
    Clamp,
}

impl OnViolation {
    /// As the file writes it.
    pub fn as_yaml(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Clamp => "clamp",
        }
    }
}

/// What a list route does with a response it cannot scan as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalid {
    /// Relay it unchanged when it fits in `max_bytes`, else 502.
    Pass,
    /// Always 502.
    Reject,
}

/// The parameter a backend reads its position from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetParam {
    /// `offset=N` rows.
    Offset(String),
    /// `page=N`, whose offset is `(N - first) × page size`.
    Page {
        /// Parameter name.
        name: String,
        /// Number of the first page.
        first: u64,
    },
}

impl OffsetParam {
    /// The parameter's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Offset(name) | Self::Page { name, .. } => name,
        }
    }
}

/// The pagination policy of a list route.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPolicy {
    /// Page-size parameter.
    pub limit_param: String,
    /// Position parameter.
    pub offset: OffsetParam,
    /// Page size injected when the request has none.
    pub default_limit: u64,
    /// Largest page size.
    pub max_limit: u64,
    /// Deepest offset.
    pub max_offset: u64,
    /// Reject or clamp.
    pub on_violation: OnViolation,
    /// Most items relayed in one response.
    pub max_items: u64,
    /// Most bytes held and relayed for one response.
    pub max_bytes: u64,
    /// Where the array sits in the response.
    pub items: ItemsPath,
    /// What to do with responses that are not JSON.
    pub on_invalid: OnInvalid,
    /// Keyset cursors, when the backend can filter by key.
    pub keyset: Option<Arc<KeysetPolicy>>,
    /// Evaluate, count and report, but let requests and responses through unchanged.
    pub report_only: bool,
}

/// Sort direction of a keyset route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Keys increase.
    Asc,
    /// Keys decrease.
    Desc,
}

impl Order {
    /// As the file writes it.
    pub fn as_yaml(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }
}

/// One column of a keyset key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyField {
    /// JSON pointer of the key inside each item, e.g. `/id`.
    pub field: String,
    /// Backend parameter that takes "after this value", e.g. `id_gt`.
    pub param: String,
    /// `field` split into unescaped segments, once.
    pub segments: Vec<String>,
}

impl KeyField {
    /// A key column; an invalid pointer has no segments (configuration refuses it first).
    pub fn new(field: String, param: String) -> Self {
        let segments = parse_pointer(&field).unwrap_or_default();
        Self {
            field,
            param,
            segments,
        }
    }
}

/// How a backend filters by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysetPolicy {
    /// One or two key columns, most significant first.
    pub keys: Vec<KeyField>,
    /// Sort direction.
    pub order: Order,
    /// Parameters always sent so the backend sorts by the key.
    pub set_params: Vec<(String, String)>,
    /// Parameter clients send cursors in.
    pub cursor_param: String,
    /// Field written into the envelope with the next cursor (envelope responses only).
    pub next_cursor_field: Option<String>,
    /// `cursor::keyset_id` of the route and its keyset.
    pub route_id: u64,
    /// Signs and verifies its cursors.
    pub codec: Arc<CursorCodec>,
}

/// An RFC 6901 JSON pointer split into unescaped segments (`/a~1b` → `["a/b"]`); `None` when
/// it is malformed.
pub(crate) fn parse_pointer(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    rest.split('/')
        .map(|segment| {
            let unescaped = segment.replace("~1", "/").replace("~0", "~");
            let ok = !segment.contains('~')
                || segment
                    .split('~')
                    .skip(1)
                    .all(|s| s.starts_with(['0', '1']));
            ok.then_some(unescaped)
        })
        .collect()
}
