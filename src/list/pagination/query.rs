//! Reading a list request's query string as every backend might: raw `name=value` pieces, names
//! folded as PHP, Rack and qs read them (so a disguised `limit` is found), and controlled values
//! that must be plain digits.

use crate::PaginationError;

/// One `name=value` piece of a query string, raw.
#[derive(Debug, Clone, Copy)]
pub(super) struct Piece<'a> {
    pub(super) raw: &'a str,
    pub(super) name: &'a str,
    pub(super) value: Option<&'a str>,
}

pub(super) fn pieces(query: &str) -> Vec<Piece<'_>> {
    if query.is_empty() {
        return Vec::new();
    }
    query
        .split('&')
        .map(|raw| match raw.split_once('=') {
            Some((name, value)) => Piece {
                raw,
                name,
                value: Some(value),
            },
            None => Piece {
                raw,
                name: raw,
                value: None,
            },
        })
        .collect()
}

/// A name as the loosest backend would read it: percent- and plus-decoded, cut at NUL (PHP),
/// lower case, leading spaces dropped and `.` and spaces turned into `_` (PHP). Lower case
/// includes the letters Unicode case-insensitive matching takes for ASCII ones: `ſ` (long s)
/// and `K` (Kelvin sign) fold to `s` and `k` (Go's `strings.EqualFold`, used by gorilla/schema),
/// `ı` and `İ` to `i` (Java's `equalsIgnoreCase`, .NET's `OrdinalIgnoreCase`).
pub(super) fn folded(name: &str) -> String {
    let decoded: String = form_urlencoded::parse(name.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    let cut = decoded.split('\0').next().unwrap_or_default();
    cut.trim_start_matches(' ')
        .chars()
        .map(|c| match c {
            '.' | ' ' => '_',
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            '\u{131}' | '\u{130}' => 'i',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The names a folded name may be read as: itself; without leading brackets and with anything
/// from its first bracket on removed (`[limit]`, `limit]`, `limit[]`, `limit[x]`: Rack 2, qs,
/// PHP arrays); with an unmatched `[` turned into `_` (PHP: `per[page` is `per_page`); and
/// without a leading `!` or `_` (Spring's data binder: `!limit` is `limit`'s default, `_limit`
/// a field marker that resets it).
pub(super) fn readings(name: &str) -> [String; 4] {
    let unbracketed = name.trim_start_matches(['[', ']']);
    let base = unbracketed
        .split(['[', ']'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let php = match name.find('[') {
        Some(open) if !name[open..].contains(']') => name.replacen('[', "_", 1),
        _ => name.to_owned(),
    };
    let spring = name.strip_prefix(['!', '_']).unwrap_or(name).to_owned();
    [name.to_owned(), base, php, spring]
}

/// The bracketed names PHP's parser reads `name` as, one a bracket pair, shortest first. After
/// a `]`, anything but another `[` is dropped (`page[size]x` and `page[size]]` are
/// `page[size]`), and a longer path makes the shorter one an array (`page[size][]`): each is a
/// reading of the shorter names. Empty when `name` has no `[`.
pub(super) fn bracket_paths(name: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let Some(mut end) = name.find('[') else {
        return paths;
    };
    while name[end..].starts_with('[') {
        let Some(close) = name[end..].find(']') else {
            break;
        };
        end += close + 1;
        paths.push(name[..end].to_owned());
    }
    paths
}

/// Which controlled name (if any) a piece that is not spelled exactly like one could still be
/// read as by some backend: `;` separates parameters for some (Rack < 3, Bottle), and names are
/// read as [`folded`] and [`readings`] describe.
pub(super) fn disguised(raw: &str, folded_controlled: &[String]) -> Option<usize> {
    // A plain name (lower-case letters, digits, `-`; no `;` in the piece) folds and reads as
    // itself: compared as it is, with no copy (most filters are spelled so).
    let name = raw.split_once('=').map_or(raw, |(name, _)| name);
    if !raw.contains(';')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return folded_controlled.iter().position(|c| c == name);
    }
    raw.split(';').find_map(|sub| {
        let raw_name = sub.split_once('=').map_or(sub, |(name, _)| name);
        let name = folded(raw_name);
        let mut readings = readings(&name).to_vec();
        readings.extend(bracket_paths(&name));
        if let Some(tail) = dotted_tail(raw_name) {
            readings.extend(self::readings(&tail));
        }
        folded_controlled
            .iter()
            .position(|c| readings.iter().any(|r| r == c))
    })
}

/// The property a dotted name binds (ASP.NET Core and Spring bind `paging.limit` to the
/// `limit` of a `paging` object, whichever case): the decoded name after its last `.`, folded.
fn dotted_tail(raw_name: &str) -> Option<String> {
    let decoded: String = form_urlencoded::parse(raw_name.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect();
    let (_, tail) = decoded.rsplit_once('.')?;
    Some(folded(tail))
}

/// Reads a controlled value: 1 to 20 plain ASCII digits that fit in a `u64`.
pub(super) fn number(param: &str, value: Option<&str>) -> Result<u64, PaginationError> {
    let value = value.unwrap_or_default();
    if value.is_empty() {
        return Err(PaginationError::Empty {
            param: param.to_owned(),
        });
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PaginationError::NotANumber {
            param: param.to_owned(),
            value: value.to_owned(),
        });
    }
    value.parse().map_err(|_| PaginationError::Overflow {
        param: param.to_owned(),
        value: value.to_owned(),
    })
}
