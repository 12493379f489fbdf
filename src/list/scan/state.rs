//! Where the scanner stands between two bytes: the states of [`machine`](super::machine).

/// Progress inside a JSON number, per the RFC 8259 grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Num {
    /// `-`, a digit must follow.
    Minus,
    /// A leading `0`: no more integer digits.
    Zero,
    /// Integer digits.
    Int,
    /// `.`, a digit must follow.
    Dot,
    /// Fraction digits.
    Frac,
    /// `e` or `E`, a sign or digit must follow.
    Exp,
    /// Exponent sign, a digit must follow.
    ExpSign,
    /// Exponent digits.
    ExpInt,
}

/// Where the scanner is between two bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Before the root value.
    Start,
    /// A value must follow (after `:` or an array's `,`).
    Value,
    /// Just after `[`: a value or `]`.
    ValueOrClose,
    /// A key must follow (after an object's `,`).
    Key,
    /// Just after `{`: a key or `}`.
    KeyOrClose,
    /// After a key: `:` must follow.
    Colon,
    /// After a value inside a container: `,` or the container's close.
    AfterValue,
    /// The root is complete: whitespace only.
    End,
    /// Inside a string that is skipped (a value, or a key not compared with the path).
    Str { key: bool },
    /// After `\` in a skipped string.
    Esc { key: bool },
    /// Inside the hex digits of `\u` in a skipped string (`left` digits to go).
    Hex { key: bool, left: u8 },
    /// Inside a key compared with the next path segment, matching so far.
    KeyStr,
    /// After `\` in a compared key.
    KeyEsc,
    /// Inside the hex digits of `\u` in a compared key.
    KeyHex { left: u8 },
    /// Inside a number.
    Num(Num),
    /// Inside `true`, `false` or `null`: the bytes still expected.
    Lit(&'static [u8]),
}

/// Whether `b` can begin a JSON value.
pub(super) fn is_value_start(b: u8) -> bool {
    matches!(
        b,
        b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
    )
}
