//! Push-based, allocation-free scanner that finds the item boundaries of one JSON array in a
//! response body as it streams through.
//!
//! The list guard must know where each item of a list response ends — to cut a page after the
//! last whole item and close the JSON — without parsing the body and without waiting for it.
//! [`Scanner`] is fed the body's chunks as they arrive, split anywhere (inside strings, escapes,
//! numbers or keys), and reports [`Event`]s carrying absolute byte offsets: where the root
//! value and the target array open and close, and the `[start, end)` span of every item.
//!
//! It keeps only what is needed to know where it is: a stack of open containers (one byte per
//! level, bounded by `max_depth`), whether it is inside a string or an escape, the state of the
//! number or literal being read, and how much of the [`ItemsPath`] has matched. Nothing is
//! allocated per item or per chunk.
//!
//! # What is validated
//!
//! Structure fully: brackets match, commas and colons sit where JSON puts them (no trailing
//! commas), keys are strings, strings close, escapes are one of `\" \\ \/ \b \f \n \r \t \uXXXX`,
//! numbers follow the JSON grammar, `true`/`false`/`null` are spelled out, nothing follows the
//! root but whitespace. Not validated, because no structure depends on them: UTF-8 and raw
//! control characters inside strings, and the pairing of `\u` surrogates in values. Leading
//! and trailing whitespace (space, tab, LF, CR) is allowed, and so is a UTF-8 byte order mark
//! before the root: RFC 8259 forbids emitting one but lets parsers skip it, and clients' do
//! (fetch's `.json()`, Python's requests), so a list behind one is still a list to count.
//!
//! So a body that passes is JSON up to string contents, and for every [`Event::Item`] the bytes
//! `body[..end]` followed by `]` and one `}` per [`ItemsPath`] segment are a valid JSON document
//! holding the items seen so far (given valid string contents).
//!
//! # Finding the list
//!
//! Path keys are compared after JSON unescaping (`"d\u0061ta"` is `data`), incrementally, so
//! a key split across chunks costs nothing and no key is ever buffered. Only the first key
//! equal to a path segment, at the depth where that segment is expected, counts: its value
//! must be an object (or, for the last segment, an array), otherwise scanning fails at once
//! with [`ScanError::ItemsNotFound`]; an object chosen on the path that closes without the
//! next segment fails the same way at its `}`. Keys inside items are never compared. Once the
//! list has closed, the keys of the objects around it are still compared with their segments:
//! a second member of one (`{"data":[…],"data":[…]}`) fails with
//! [`ScanError::DuplicateItems`], since clients read the last of two and would get a list
//! nobody counted.
//!
//! # Why hand-written
//!
//! No crate does push-based, allocation-free item boundary scanning: `struson` reads from a
//! blocking `Read` and decodes every value, `actson` is push-based but validates each byte
//! through a `VecDeque` of events, and `serde_json` needs the whole body.
//!
//! The hot path is the body of a large list: strings are skipped to the next `"` or `\` a
//! word at a time for their first 32 bytes and by `memchr2` beyond, and runs of plain object
//! members (`"key": "string" | integer | literal`) are consumed by a straight-line loop
//! instead of one state transition per token; everything else goes through the byte-level
//! state machine, which is also where a chunk boundary resumes. It runs at several times a
//! full `serde_json` parse (see `benches/scanner.rs`).

use std::ops::ControlFlow;

use state::State;

mod key;
mod machine;
mod skip;
mod state;

/// Nesting limit used by the proxy: deeper bodies are refused.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// Where the list sits in the response body.
///
/// Empty: the body itself is the array. `["data"]`: `{"data":[...]}`. `["result","items"]`:
/// `{"result":{"items":[...]}}`. Segments are object keys only (unescaped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemsPath(pub Vec<String>);

/// What the scanner found, with absolute byte offsets into the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The root value opened (offset of its first byte, `{` or `[`).
    RootOpen {
        /// Offset of the `{` or `[`.
        offset: u64,
        /// `true` for `{`.
        is_object: bool,
    },
    /// The target array opened: offset of its `[`.
    ItemsOpen {
        /// Offset of the `[`.
        offset: u64,
    },
    /// One complete item of the target array: `[start, end)` byte offsets of the item value
    /// itself (no surrounding whitespace or commas). Reported as soon as the item's last byte
    /// is seen; for a number item, when the byte after it is seen.
    Item {
        /// Offset of the item's first byte.
        start: u64,
        /// Offset one past the item's last byte.
        end: u64,
    },
    /// The target array closed: offset of its `]`.
    ItemsClose {
        /// Offset of the `]`.
        offset: u64,
    },
    /// The root value is complete: offset one past its last byte.
    RootClose {
        /// Offset one past the root's closing `}` or `]`.
        end: u64,
    },
}

/// Why a body is not the JSON list the scanner was told to find.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ScanError {
    /// A byte that JSON does not allow where it stands (this includes a byte order mark that
    /// is not the body's first bytes, or is cut short).
    #[error("response body is not JSON: unexpected byte 0x{byte:02x} at offset {offset}")]
    UnexpectedByte {
        /// The byte.
        byte: u8,
        /// Its offset.
        offset: u64,
    },
    /// The root is a JSON value of the wrong kind: an object is expected when the items path
    /// is non-empty, an array when it is empty.
    #[error(
        "response body is not a JSON {expected}: it starts with 0x{byte:02x} at offset {offset}"
    )]
    WrongRoot {
        /// `"object"` or `"array"`.
        expected: &'static str,
        /// The root's first byte.
        byte: u8,
        /// Its offset.
        offset: u64,
    },
    /// A container opened deeper than `max_depth` levels (the root is level 1).
    #[error("response body nests JSON deeper than {max_depth} levels at offset {offset}")]
    TooDeep {
        /// The limit.
        max_depth: usize,
        /// Offset of the `{` or `[` that went over it.
        offset: u64,
    },
    /// Something other than whitespace after the root value.
    #[error("response body has data after the JSON value: byte 0x{byte:02x} at offset {offset}")]
    TrailingData {
        /// The byte.
        byte: u8,
        /// Its offset.
        offset: u64,
    },
    /// The items path leads nowhere: a path key's value is not an object (or, for the last
    /// segment, not an array), or the object where the next segment was expected closed
    /// without it.
    #[error("response body has no list at the configured items path (decided at offset {offset})")]
    ItemsNotFound {
        /// Offset of the wrong-typed value, or of the `}` that closed without the key.
        offset: u64,
    },
    /// A key on the items path appears a second time in its object, after the list: most
    /// JSON parsers keep the last of two members, so clients would read a list the guard
    /// never counted.
    #[error("response body has the items path's key {key:?} twice (the second at offset {offset})")]
    DuplicateItems {
        /// The key.
        key: String,
        /// Offset of the second member's value.
        offset: u64,
    },
    /// The body ended before the root value was complete (or was empty).
    #[error("response body ended at offset {offset} before its JSON value was complete")]
    UnexpectedEnd {
        /// Bytes fed in total.
        offset: u64,
    },
}

/// Whether the scanner may go on.
#[derive(Clone, Debug)]
enum Status {
    Running,
    /// The callback broke: the rest is not scanned.
    Stopped,
    /// A structural error; returned again by every later call.
    Failed(ScanError),
}

/// Push-based scanner for the items of one JSON array; see the module docs.
#[derive(Clone, Debug)]
pub struct Scanner {
    /// The path segments, as bytes.
    path: Box<[Box<[u8]>]>,
    max_depth: usize,
    /// Open containers, innermost last: `true` for an object.
    stack: Vec<bool>,
    state: State,
    status: Status,
    /// Bytes fed so far.
    offset: u64,
    /// Path segments matched by the open objects.
    matched: usize,
    /// Depth of the object whose keys are compared with `path[matched]`; `usize::MAX` if none.
    key_depth: usize,
    /// Bytes of `path[matched]` matched by the key being read.
    key_pos: usize,
    /// The `\u` escape being decoded in a compared key.
    key_acc: u32,
    /// A high surrogate waiting for its pair in a compared key (0 if none).
    key_hi: u32,
    /// The last key read equals `path[matched]`: the value that follows is on the path.
    pending: bool,
    /// The target array has opened.
    found: bool,
    /// Depth directly inside the target array; `usize::MAX` when not inside it.
    items_depth: usize,
    /// Offset of the item being read.
    item_start: u64,
    /// Bytes of a leading UTF-8 byte order mark read so far (3: all of it).
    bom: usize,
}

impl Scanner {
    /// A scanner for the array at `path`. `max_depth` limits nesting ([`DEFAULT_MAX_DEPTH`]
    /// in the proxy): the root is level 1, and a container opened deeper fails with
    /// [`ScanError::TooDeep`].
    #[must_use]
    pub fn new(path: ItemsPath, max_depth: usize) -> Self {
        let path: Box<[Box<[u8]>]> = path
            .0
            .into_iter()
            .map(|segment| segment.into_bytes().into_boxed_slice())
            .collect();
        let key_depth = if path.is_empty() { usize::MAX } else { 1 };
        Self {
            path,
            max_depth,
            stack: Vec::with_capacity(max_depth.min(32)),
            state: State::Start,
            status: Status::Running,
            offset: 0,
            matched: 0,
            key_depth,
            key_pos: 0,
            key_acc: 0,
            key_hi: 0,
            pending: false,
            found: false,
            items_depth: usize::MAX,
            item_start: 0,
            bom: 0,
        }
    }

    /// Bytes fed so far (every chunk counts whole, even one cut short by a `Break`).
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Feeds the next chunk. Offsets are absolute (counted over all chunks fed so far), and
    /// `on_event` is called for each event in order.
    ///
    /// When `on_event` returns [`ControlFlow::Break`], scanning stops at once: the rest of the
    /// chunk is not examined, `Ok(Break)` is returned, and so is it by every later `feed`,
    /// which scans nothing. Otherwise returns `Ok(Continue)`.
    ///
    /// # Errors
    ///
    /// The first structural error; every later `feed` and [`finish`](Self::finish) returns
    /// it again. Events before the failing byte have been reported.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(Event) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, ScanError> {
        match &self.status {
            Status::Running => {}
            Status::Stopped => return Ok(ControlFlow::Break(())),
            Status::Failed(error) => return Err(error.clone()),
        }
        let base = self.offset;
        self.offset += chunk.len() as u64;
        let result = match self.skip_bom(chunk, base) {
            Ok((rest, at)) => self.run(rest, at, &mut on_event),
            Err(error) => Err(error),
        };
        match &result {
            Ok(ControlFlow::Continue(())) => {}
            Ok(ControlFlow::Break(())) => self.status = Status::Stopped,
            Err(error) => self.status = Status::Failed(error.clone()),
        }
        result
    }

    /// Skips the bytes of a UTF-8 byte order mark at the body's start (`base` is the chunk's
    /// offset): the rest of the chunk and its offset. A mark begun and not finished is an
    /// error; a body that does not begin with its first byte is scanned as it is.
    fn skip_bom<'c>(&mut self, chunk: &'c [u8], base: u64) -> Result<(&'c [u8], u64), ScanError> {
        const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
        let mut at = 0;
        while let (Some(&byte), Ok(i)) = (chunk.get(at), usize::try_from(base + at as u64)) {
            // Only while every byte before was one of the mark's.
            if i >= BOM.len() || self.bom != i {
                break;
            }
            if byte == BOM[i] {
                self.bom += 1;
                at += 1;
            } else if i == 0 {
                break;
            } else {
                let offset = base + at as u64;
                return Err(ScanError::UnexpectedByte { byte, offset });
            }
        }
        Ok((&chunk[at..], base + at as u64))
    }

    /// The body ended.
    ///
    /// # Errors
    ///
    /// [`ScanError::UnexpectedEnd`] if the root value is incomplete (or the body was empty or
    /// whitespace); the error `feed` returned, if any. A complete root always holds the
    /// target array, since a root closing without it fails in `feed`. After a `Break`,
    /// nothing is checked and this returns `Ok`.
    pub fn finish(&mut self) -> Result<(), ScanError> {
        match &self.status {
            Status::Running if self.state == State::End => Ok(()),
            Status::Running => {
                let error = ScanError::UnexpectedEnd {
                    offset: self.offset,
                };
                self.status = Status::Failed(error.clone());
                Err(error)
            }
            Status::Stopped => Ok(()),
            Status::Failed(error) => Err(error.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
