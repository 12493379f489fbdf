//! `_method` in a JSON body, byte by byte across frames. Laravel reads a JSON body's top-level
//! keys as its form parameters (`Request::getInputSource`), and Symfony's `getMethod` then
//! takes `_method` from them; Express `method-override` with a `req.body._method` getter does
//! the same. Only a top-level key counts, and only a string value: as both read it.
//!
//! Hand-written: `serde_json` and its streaming readers build whole values (an upload of any
//! size would be held); this keeps a nesting depth, the first bytes of one key and one value.

use super::Value;

/// The key that overrides, as the body's bytes spell it once unescaped (compared in any case).
const KEY: &[u8; 7] = b"_method";

/// What the string being read is to the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A key of the top-level object.
    Key,
    /// The value of a top-level `_method` key.
    Method,
    /// Anything else.
    Other,
}

/// Inside a string: how much of an escape is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After a `\`.
    Started,
    /// In `\uXXXX`: the digits read so far and their value.
    Unicode {
        digits: u8,
        code: u16,
    },
}

/// The scan of one JSON body.
#[derive(Debug)]
pub(super) struct Json {
    /// Open objects and arrays (saturating: a deeper body is never at the top level again
    /// until as many closers come).
    depth: u32,
    /// The body's first value is an object: only its keys count.
    object: Option<bool>,
    /// In a string, and its role.
    string: Option<Role>,
    escape: Escape,
    /// The next string at depth 1 is a key (after `{` or `,`).
    key_next: bool,
    /// The last key read matched `_method`: its value, after `:`, is judged.
    method_key: bool,
    /// The key being read: its first bytes (one more than [`KEY`] to tell a longer one).
    key: [u8; 8],
    key_len: usize,
    /// The `_method` value being read.
    value: Value,
}

impl Default for Json {
    fn default() -> Self {
        Self {
            depth: 0,
            object: None,
            string: None,
            escape: Escape::None,
            key_next: false,
            method_key: false,
            key: [0; 8],
            key_len: 0,
            value: Value::default(),
        }
    }
}

impl Json {
    /// Reads one byte; returns a `_method` value when one ends.
    pub(super) fn byte(&mut self, byte: u8) -> Option<Value> {
        match self.string {
            Some(role) => self.in_string(role, byte),
            None => {
                self.structural(byte);
                None
            }
        }
    }

    /// A byte outside strings.
    fn structural(&mut self, byte: u8) {
        let top = self.object == Some(true) && self.depth == 1;
        match byte {
            b'{' | b'[' => {
                self.object.get_or_insert(byte == b'{');
                self.depth = self.depth.saturating_add(1);
                self.key_next = self.object == Some(true) && self.depth == 1;
                self.method_key = false;
            }
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                self.method_key = false;
            }
            b',' if top => {
                self.key_next = true;
                self.method_key = false;
            }
            b'"' => {
                let role = if top && self.key_next {
                    self.key_len = 0;
                    Role::Key
                } else if top && self.method_key {
                    self.value = Value::default();
                    Role::Method
                } else {
                    Role::Other
                };
                self.key_next = false;
                self.string = Some(role);
            }
            b':' | b' ' | b'\t' | b'\r' | b'\n' => {}
            // A number, `true`, `false` or `null`: a value that is no string overrides nothing.
            _ if top => self.method_key = false,
            _ => {}
        }
    }

    /// A byte inside a string of `role`.
    fn in_string(&mut self, role: Role, byte: u8) -> Option<Value> {
        let unescaped = match self.escape {
            Escape::None => match byte {
                b'"' => return self.string_end(role),
                b'\\' => {
                    self.escape = Escape::Started;
                    return None;
                }
                _ => byte,
            },
            Escape::Started => {
                self.escape = Escape::None;
                match byte {
                    b'u' => {
                        self.escape = Escape::Unicode { digits: 0, code: 0 };
                        return None;
                    }
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    // `\"`, `\\`, `\/`; anything else is invalid JSON, kept as written.
                    _ => byte,
                }
            }
            Escape::Unicode { digits, code } => {
                let Some(digit) = char::from(byte).to_digit(16) else {
                    // Invalid JSON: no parser reads it; drop the escape.
                    self.escape = Escape::None;
                    return None;
                };
                let code = code << 4 | digit as u16;
                if digits < 3 {
                    self.escape = Escape::Unicode {
                        digits: digits + 1,
                        code,
                    };
                    return None;
                }
                self.escape = Escape::None;
                // Beyond ASCII no byte can spell a method or the key: any such byte will do.
                u8::try_from(code).ok().filter(u8::is_ascii).unwrap_or(0xff)
            }
        };
        match role {
            Role::Key => {
                if self.key_len < self.key.len() {
                    self.key[self.key_len] = unescaped;
                }
                self.key_len = self.key_len.saturating_add(1);
            }
            Role::Method => self.value.push(unescaped),
            Role::Other => {}
        }
        None
    }

    fn string_end(&mut self, role: Role) -> Option<Value> {
        self.string = None;
        match role {
            Role::Key => {
                self.method_key =
                    self.key_len == KEY.len() && self.key[..KEY.len()].eq_ignore_ascii_case(KEY);
                None
            }
            Role::Method => {
                self.method_key = false;
                Some(std::mem::take(&mut self.value))
            }
            Role::Other => None,
        }
    }
}
