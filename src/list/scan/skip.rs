//! Hot-path helpers: skipping string contents a word at a time, and whole runs of simple
//! object members without going through the state machine byte by byte.

use memchr::memchr2;

use super::state::State;

/// JSON whitespace.
#[inline]
pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// `0x0101…01` times a byte: the byte in every lane of a word.
const fn lanes(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// The high bit of every lane of `word` that is zero (exact for the lowest such lane).
#[inline]
fn zero_lanes(word: u64) -> u64 {
    word.wrapping_sub(lanes(1)) & !word & lanes(0x80)
}

/// Short strings (most of them) are searched a word at a time; longer ones by `memchr2`.
const SWAR_WORDS: usize = 4;

/// Offset of the first `"` or `\` in `chunk[from..]`, as an index into `chunk`.
#[inline]
pub(super) fn find_quote_or_escape(chunk: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    for _ in 0..SWAR_WORDS {
        let Some(bytes) = chunk.get(i..i + 8) else {
            break;
        };
        let mut word = [0; 8];
        word.copy_from_slice(bytes);
        let word = u64::from_le_bytes(word);
        let hits = zero_lanes(word ^ lanes(b'"')) | zero_lanes(word ^ lanes(b'\\'));
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    memchr2(b'"', b'\\', &chunk[i..]).map(|k| i + k)
}

/// Skips members of an object whose keys are not compared with the path, for as long as they
/// have the common shape of API items, `"key": "string"`, `"key": 123` or `"key": true`;
/// entered after the object's `{` or a `,` between its members, in state `st` (`Key` or
/// `KeyOrClose`).
///
/// Stops at anything else — a nested container, the object's `}`, a string escape, a number
/// with a fraction or exponent, an error, the end of the chunk — and returns where the state
/// machine resumes: the index of the first byte it did not consume, and the state it is in
/// there. Nothing skipped is ever an event (these values' container is an object, never the
/// target array), and every byte skipped is checked as the state machine would check it.
pub(super) fn members(chunk: &[u8], mut i: usize, mut st: State) -> (usize, State) {
    let len = chunk.len();
    macro_rules! skip_ws {
        () => {
            while i < len && is_ws(chunk[i]) {
                i += 1;
            }
            if i == len {
                return (i, st);
            }
        };
    }
    loop {
        skip_ws!();
        if chunk[i] != b'"' {
            return (i, st);
        }
        i += 1;
        st = State::Str { key: true };
        let Some(j) = find_quote_or_escape(chunk, i) else {
            return (i, st);
        };
        if chunk[j] == b'\\' {
            return (j + 1, State::Esc { key: true });
        }
        i = j + 1;
        st = State::Colon;
        skip_ws!();
        if chunk[i] != b':' {
            return (i, st);
        }
        i += 1;
        st = State::Value;
        skip_ws!();
        match chunk[i] {
            b'"' => {
                i += 1;
                st = State::Str { key: false };
                let Some(j) = find_quote_or_escape(chunk, i) else {
                    return (i, st);
                };
                if chunk[j] == b'\\' {
                    return (j + 1, State::Esc { key: false });
                }
                i = j + 1;
            }
            b'1'..=b'9' => {
                let mut k = i + 1;
                while k < len && chunk[k].is_ascii_digit() {
                    k += 1;
                }
                if k == len || matches!(chunk[k], b'.' | b'e' | b'E') {
                    return (i, st);
                }
                i = k;
            }
            b't' if chunk[i..].starts_with(b"true") => i += 4,
            b'f' if chunk[i..].starts_with(b"false") => i += 5,
            b'n' if chunk[i..].starts_with(b"null") => i += 4,
            _ => return (i, st),
        }
        st = State::AfterValue;
        skip_ws!();
        if chunk[i] != b',' {
            return (i, st);
        }
        i += 1;
        st = State::Key;
    }
}
