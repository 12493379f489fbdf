//! Comparing an object key with the next path segment as its bytes stream in, after JSON
//! unescaping, without buffering the key.

use super::Scanner;

impl Scanner {
    /// Feeds unescaped key bytes; `false` once the key cannot equal the segment.
    pub(super) fn key_bytes(&mut self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return true;
        }
        if self.key_hi != 0 {
            // A high surrogate not followed by its low half: not a valid key.
            return false;
        }
        let end = self.key_pos + bytes.len();
        if self.path[self.matched].get(self.key_pos..end) == Some(bytes) {
            self.key_pos = end;
            true
        } else {
            false
        }
    }

    /// Feeds the `\uXXXX` escape decoded into `key_acc`; `false` once the key cannot equal
    /// the segment (including an unpaired surrogate, which no segment holds).
    pub(super) fn key_unicode(&mut self) -> bool {
        let unit = self.key_acc;
        let scalar = match unit {
            0xD800..=0xDBFF => {
                if self.key_hi != 0 {
                    return false;
                }
                self.key_hi = unit;
                return true;
            }
            0xDC00..=0xDFFF => {
                if self.key_hi == 0 {
                    return false;
                }
                let high = std::mem::take(&mut self.key_hi);
                0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00)
            }
            _ => unit,
        };
        let Some(c) = char::from_u32(scalar) else {
            return false;
        };
        let mut utf8 = [0; 4];
        self.key_bytes(c.encode_utf8(&mut utf8).as_bytes())
    }

    /// At the key's closing quote: whether the whole key equals the segment.
    pub(super) fn key_complete(&self) -> bool {
        self.key_hi == 0 && self.key_pos == self.path[self.matched].len()
    }
}
