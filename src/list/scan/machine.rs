//! The byte-level state machine behind [`Scanner::feed`].

use std::ops::ControlFlow;

use memchr::memchr2;

use super::skip::{find_quote_or_escape, is_ws, members};
use super::state::{Num, State, is_value_start};
use super::{Event, ScanError, Scanner};

impl Scanner {
    /// Scans `chunk`, whose first byte is at `base`.
    #[expect(
        clippy::too_many_lines,
        reason = "one loop over the states keeps the hot path tight (benches/scanner.rs)"
    )]
    #[inline]
    pub(super) fn run<F: FnMut(Event) -> ControlFlow<()>>(
        &mut self,
        chunk: &[u8],
        base: u64,
        on_event: &mut F,
    ) -> Result<ControlFlow<()>, ScanError> {
        let len = chunk.len();
        let at = |i: usize| base + i as u64;
        let mut i = 0;
        let mut st = self.state;

        macro_rules! emit {
            ($event:expr) => {
                if on_event($event).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            };
        }
        macro_rules! unexpected {
            ($i:expr) => {
                return Err(ScanError::UnexpectedByte {
                    byte: chunk[$i],
                    offset: at($i),
                })
            };
        }
        // A scalar value ended at `$end`: report it if it is an item.
        macro_rules! scalar_end {
            ($end:expr) => {
                if self.stack.len() == self.items_depth {
                    emit!(Event::Item {
                        start: self.item_start,
                        end: $end,
                    });
                }
                st = State::AfterValue;
            };
        }

        'bytes: while i < len {
            match st {
                State::Str { key } => {
                    let Some(j) = find_quote_or_escape(chunk, i) else {
                        break 'bytes;
                    };
                    i = j + 1;
                    if chunk[j] == b'\\' {
                        st = State::Esc { key };
                    } else if key {
                        st = State::Colon;
                    } else {
                        scalar_end!(at(i));
                    }
                }
                State::Esc { key } => {
                    st = match chunk[i] {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                            State::Str { key }
                        }
                        b'u' => State::Hex { key, left: 4 },
                        _ => unexpected!(i),
                    };
                    i += 1;
                }
                State::Hex { key, left } => {
                    if !chunk[i].is_ascii_hexdigit() {
                        unexpected!(i);
                    }
                    i += 1;
                    st = if left == 1 {
                        State::Str { key }
                    } else {
                        State::Hex {
                            key,
                            left: left - 1,
                        }
                    };
                }
                State::KeyStr => {
                    let rest = &chunk[i..];
                    let stop = memchr2(b'"', b'\\', rest);
                    let plain = &rest[..stop.unwrap_or(rest.len())];
                    if !self.key_bytes(plain) {
                        // Not the segment: skip the rest of the key from here.
                        st = State::Str { key: true };
                        continue;
                    }
                    i += plain.len();
                    if stop.is_none() {
                        break 'bytes;
                    }
                    if chunk[i] == b'\\' {
                        st = State::KeyEsc;
                    } else {
                        self.pending = self.key_complete();
                        st = State::Colon;
                    }
                    i += 1;
                }
                State::KeyEsc => {
                    let decoded = match chunk[i] {
                        b @ (b'"' | b'\\' | b'/') => b,
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            self.key_acc = 0;
                            i += 1;
                            st = State::KeyHex { left: 4 };
                            continue;
                        }
                        _ => unexpected!(i),
                    };
                    i += 1;
                    st = if self.key_bytes(&[decoded]) {
                        State::KeyStr
                    } else {
                        State::Str { key: true }
                    };
                }
                State::KeyHex { left } => {
                    let Some(digit) = char::from(chunk[i]).to_digit(16) else {
                        unexpected!(i);
                    };
                    i += 1;
                    self.key_acc = self.key_acc << 4 | digit;
                    st = if left > 1 {
                        State::KeyHex { left: left - 1 }
                    } else if self.key_unicode() {
                        State::KeyStr
                    } else {
                        State::Str { key: true }
                    };
                }
                State::Num(mut num) => {
                    while i < len {
                        num = match (num, chunk[i]) {
                            (Num::Minus, b'0') => Num::Zero,
                            (Num::Minus | Num::Int, b'0'..=b'9') => Num::Int,
                            (Num::Zero | Num::Int, b'.') => Num::Dot,
                            (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
                            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
                            (Num::Exp, b'+' | b'-') => Num::ExpSign,
                            (Num::Exp | Num::ExpSign | Num::ExpInt, b'0'..=b'9') => Num::ExpInt,
                            _ => break,
                        };
                        i += 1;
                    }
                    if i == len {
                        st = State::Num(num);
                        break 'bytes;
                    }
                    if !matches!(num, Num::Zero | Num::Int | Num::Frac | Num::ExpInt) {
                        unexpected!(i);
                    }
                    // The terminator is examined by the next state.
                    scalar_end!(at(i));
                }
                State::Lit(rest) => {
                    let n = rest.len().min(len - i);
                    if let Some(k) = (0..n).find(|&k| chunk[i + k] != rest[k]) {
                        unexpected!(i + k);
                    }
                    i += n;
                    if n < rest.len() {
                        st = State::Lit(&rest[n..]);
                    } else {
                        scalar_end!(at(i));
                    }
                }
                State::Start
                | State::Value
                | State::ValueOrClose
                | State::Key
                | State::KeyOrClose
                | State::Colon
                | State::AfterValue
                | State::End => {
                    let b = loop {
                        let b = chunk[i];
                        if !is_ws(b) {
                            break b;
                        }
                        i += 1;
                        if i == len {
                            break 'bytes;
                        }
                    };
                    let close = match (st, b) {
                        (State::AfterValue, b',') => {
                            i += 1;
                            if self.stack.last() != Some(&true) {
                                st = State::Value;
                            } else if self.stack.len() == self.key_depth {
                                st = State::Key;
                            } else {
                                (i, st) = members(chunk, i, State::Key);
                            }
                            continue;
                        }
                        (State::Colon, b':') => {
                            i += 1;
                            st = State::Value;
                            continue;
                        }
                        (State::Key | State::KeyOrClose, b'"') => {
                            i += 1;
                            st = if self.stack.len() == self.key_depth {
                                self.key_pos = 0;
                                self.key_hi = 0;
                                State::KeyStr
                            } else {
                                State::Str { key: true }
                            };
                            continue;
                        }
                        (State::AfterValue, b'}' | b']') => {
                            if (b == b'}') != (self.stack.last() == Some(&true)) {
                                unexpected!(i);
                            }
                            true
                        }
                        (State::KeyOrClose, b'}') | (State::ValueOrClose, b']') => true,
                        (State::Value | State::ValueOrClose, _) => false,
                        (State::Start, _) => {
                            let object = !self.path.is_empty();
                            if b != if object { b'{' } else { b'[' } {
                                if is_value_start(b) {
                                    return Err(ScanError::WrongRoot {
                                        expected: if object { "object" } else { "array" },
                                        byte: b,
                                        offset: at(i),
                                    });
                                }
                                unexpected!(i);
                            }
                            false
                        }
                        (State::End, _) => {
                            return Err(ScanError::TrailingData {
                                byte: b,
                                offset: at(i),
                            });
                        }
                        _ => unexpected!(i),
                    };

                    if close {
                        let depth = self.stack.len();
                        self.stack.pop();
                        if depth == self.items_depth {
                            self.items_depth = usize::MAX;
                            // The object holding the list is read on for a second member of
                            // its key (a root list has none).
                            if !self.path.is_empty() {
                                self.key_depth = depth - 1;
                            }
                            emit!(Event::ItemsClose { offset: at(i) });
                        } else if depth == self.key_depth {
                            if !self.found {
                                return Err(ScanError::ItemsNotFound { offset: at(i) });
                            }
                            // Up one level, to the object holding this one, and its segment.
                            if self.matched > 0 {
                                self.matched -= 1;
                                self.key_depth = depth - 1;
                            } else {
                                self.key_depth = usize::MAX;
                            }
                        }
                        i += 1;
                        if self.stack.is_empty() {
                            if !self.found {
                                return Err(ScanError::ItemsNotFound { offset: at(i - 1) });
                            }
                            st = State::End;
                            emit!(Event::RootClose { end: at(i) });
                        } else {
                            scalar_end!(at(i));
                        }
                        continue;
                    }

                    // A value starts at `i`.
                    let on_path = self.pending;
                    if on_path && self.found {
                        return Err(ScanError::DuplicateItems {
                            key: String::from_utf8_lossy(&self.path[self.matched]).into_owned(),
                            offset: at(i),
                        });
                    }
                    if on_path {
                        self.pending = false;
                        let want = if self.matched + 1 == self.path.len() {
                            b'['
                        } else {
                            b'{'
                        };
                        if b != want && is_value_start(b) {
                            return Err(ScanError::ItemsNotFound { offset: at(i) });
                        }
                    }
                    if self.stack.len() == self.items_depth {
                        self.item_start = at(i);
                    }
                    st = match b {
                        b'"' => State::Str { key: false },
                        b'{' | b'[' => {
                            let object = b == b'{';
                            if self.stack.len() >= self.max_depth {
                                return Err(ScanError::TooDeep {
                                    max_depth: self.max_depth,
                                    offset: at(i),
                                });
                            }
                            self.stack.push(object);
                            if self.stack.len() == 1 {
                                emit!(Event::RootOpen {
                                    offset: at(i),
                                    is_object: object,
                                });
                            }
                            if on_path && object {
                                self.matched += 1;
                                self.key_depth = self.stack.len();
                            } else if on_path || self.path.is_empty() && self.stack.len() == 1 {
                                self.found = true;
                                self.key_depth = usize::MAX;
                                self.items_depth = self.stack.len();
                                emit!(Event::ItemsOpen { offset: at(i) });
                            }
                            if object {
                                State::KeyOrClose
                            } else {
                                State::ValueOrClose
                            }
                        }
                        b'-' => State::Num(Num::Minus),
                        b'0' => State::Num(Num::Zero),
                        b'1'..=b'9' => State::Num(Num::Int),
                        b't' => State::Lit(b"rue"),
                        b'f' => State::Lit(b"alse"),
                        b'n' => State::Lit(b"ull"),
                        _ => unexpected!(i),
                    };
                    i += 1;
                    if st == State::KeyOrClose && self.stack.len() != self.key_depth {
                        // An object whose keys are not compared: skip its plain members.
                        (i, st) = members(chunk, i, st);
                    }
                }
            }
        }
        self.state = st;
        Ok(ControlFlow::Continue(()))
    }
}
