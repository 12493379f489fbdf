//! NDJSON from `COPY … (FORMAT csv)`: the database writes each column bare (its output
//! function, what `psql \copy` pays) and pagegate turns each CSV record into one JSON object as
//! rows pass, by the column's [`Kind`], giving the values the page's JSON mapping gives
//! (`to_json`). Measured on a million rows of five columns: `row_to_json` in the database
//! alone took 1.5 s, twice the CSV export, so the JSON is written here instead.
//!
//! Columns whose JSON form is not a plain edit of their text (arrays, dates, every type not
//! named below) are selected as `to_json(column)::text` and copied verbatim.

use bytes::{BufMut, BytesMut};

use super::csv;

/// How a column's text becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An integer: its text is a JSON number.
    Integer,
    /// A float: a JSON number, or a string for `NaN` and the infinities (as `to_json` does).
    Float,
    /// Text, and numeric (served as a string so no digit is lost): a JSON string.
    Text,
    /// `t`/`f`: `true`/`false`.
    Bool,
    /// A timestamp: a string, `T` for the space and `+00:00` for `+00` (sessions run in UTC).
    Stamp {
        /// With time zone.
        zoned: bool,
    },
    /// JSON already: `json`, `jsonb`, or `to_json(column)::text` (see [`Kind::selected`]).
    Json,
}

impl Kind {
    /// The kind of a column of type `sql_type` (`format_type`).
    pub(crate) fn of(sql_type: &str) -> Self {
        match sql_type {
            "smallint" | "integer" | "bigint" => Self::Integer,
            "real" | "double precision" => Self::Float,
            "boolean" => Self::Bool,
            "text" | "character varying" | "numeric" => Self::Text,
            t => match super::catalog::timestamp(t) {
                Some(zoned) => Self::Stamp { zoned },
                None => Self::Json,
            },
        }
    }

    /// The expression `COPY` selects for `reference`, a column of type `sql_type`.
    pub(crate) fn selected(sql_type: &str, reference: &str) -> String {
        if Self::of(sql_type) == Self::Json && !matches!(sql_type, "json" | "jsonb") {
            format!("to_json({reference})::text")
        } else {
            reference.to_owned()
        }
    }
}

/// The writer of one export's rows: each column's `"name":` and kind.
#[derive(Debug, Clone)]
pub(crate) struct Rows {
    columns: Vec<(Vec<u8>, Kind)>,
}

impl Rows {
    /// Rows of `columns` (names, plain SQL names, and kinds), in this order.
    pub(crate) fn new(columns: &[(String, Kind)]) -> Self {
        let columns = columns
            .iter()
            .enumerate()
            .map(|(i, (name, kind))| {
                let open = if i == 0 { "{" } else { "," };
                (format!("{open}\"{name}\":").into_bytes(), *kind)
            })
            .collect();
        Self { columns }
    }

    /// Appends the JSON line of `row` (one CSV record, ending in `\n`) to `out`; false, with
    /// nothing appended, when the row is not a record of the columns.
    pub(crate) fn push(&self, row: &[u8], out: &mut BytesMut) -> bool {
        let start = out.len();
        let mut at = 0;
        for (prefix, kind) in &self.columns {
            let Some((value, next)) = csv::next_field(row, at) else {
                out.truncate(start);
                return false;
            };
            at = next;
            out.put_slice(prefix);
            match value {
                None => out.put_slice(b"null"),
                Some(value) => write(*kind, &value, out),
            }
        }
        if at != row.len() {
            out.truncate(start);
            return false;
        }
        out.put_slice(b"}\n");
        true
    }
}

/// Writes `value` (a field's text) as JSON of `kind`.
fn write(kind: Kind, value: &[u8], out: &mut BytesMut) {
    match kind {
        Kind::Integer => out.put_slice(value),
        Kind::Float if matches!(value, b"NaN" | b"Infinity" | b"-Infinity") => string(value, out),
        Kind::Float => out.put_slice(value),
        Kind::Bool => out.put_slice(if value == b"t" { b"true" } else { b"false" }),
        Kind::Text => string(value, out),
        Kind::Stamp { zoned } => {
            out.put_u8(b'"');
            if value.starts_with(b"infinity") || value.starts_with(b"-infinity") {
                out.put_slice(value);
            } else {
                let (body, era) = match value.strip_suffix(b" BC") {
                    Some(body) => (body, &b" BC"[..]),
                    None => (value, &b""[..]),
                };
                match memchr::memchr(b' ', body) {
                    Some(space) => {
                        out.put_slice(&body[..space]);
                        out.put_u8(b'T');
                        out.put_slice(&body[space + 1..]);
                    }
                    None => out.put_slice(body),
                }
                if zoned {
                    out.put_slice(b":00");
                }
                out.put_slice(era);
            }
            out.put_u8(b'"');
        }
        Kind::Json => one_line(value, out),
    }
}

/// Writes JSON text `value` on one line: its raw line breaks are whitespace between tokens
/// (inside a string they would be invalid JSON), written as spaces.
pub(crate) fn one_line(value: &[u8], out: &mut BytesMut) {
    let mut rest = value;
    while let Some(i) = memchr::memchr2(b'\n', b'\r', rest) {
        out.put_slice(&rest[..i]);
        out.put_u8(b' ');
        rest = &rest[i + 1..];
    }
    out.put_slice(rest);
}

/// Writes `value` as a JSON string, escaped as PostgreSQL's `to_json` escapes it.
pub(crate) fn string(value: &[u8], out: &mut BytesMut) {
    out.put_u8(b'"');
    // Most text needs no escape. Checked without a branch a byte, so the compiler checks many
    // bytes an instruction: the byte-at-a-time loop below was a quarter of an NDJSON export's
    // CPU.
    let plain = !value.iter().fold(false, |seen, &b| {
        seen | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.put_slice(value);
        out.put_u8(b'"');
        return;
    }
    let mut from = 0;
    for (i, &b) in value.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => {
                out.put_slice(&value[from..i]);
                out.put_slice(format!("\\u{b:04x}").as_bytes());
                from = i + 1;
                continue;
            }
            _ => continue,
        };
        out.put_slice(&value[from..i]);
        out.put_slice(escaped);
        from = i + 1;
    }
    out.put_slice(&value[from..]);
    out.put_u8(b'"');
}

#[cfg(test)]
mod tests;
