//! Keys of list items: pulling them out of one item's raw JSON, and checking their order.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::cursor::is_scalar;
use crate::list::config::{KeyField, Order};

/// The raw key values of one item, most significant first; `None` when a field is missing,
/// `null`, a boolean, an object or an array.
pub(crate) fn extract(item: &[u8], fields: &[KeyField]) -> Option<Vec<Box<RawValue>>> {
    let text = std::str::from_utf8(item).ok()?;
    fields
        .iter()
        .map(|f| {
            extract_one(text, &f.segments)
                .filter(|v| is_scalar(v))
                .map(|v| v.to_owned())
        })
        .collect()
}

/// Follows the pointer one level at a time. Each level is parsed as a map (or list) of raw
/// values borrowed from the item, so only the members on the way to the key are looked at and
/// nothing is copied until the key itself.
fn extract_one<'a>(text: &'a str, segments: &[String]) -> Option<&'a RawValue> {
    let mut current: Option<&'a RawValue> = None;
    let mut json: &'a str = text;
    for segment in segments {
        let next: &'a RawValue = if json.trim_start().starts_with('[') {
            let list: Vec<&'a RawValue> = serde_json::from_str(json).ok()?;
            list.get(segment.parse::<usize>().ok()?).copied()?
        } else {
            let map: HashMap<String, &'a RawValue> = serde_json::from_str(json).ok()?;
            map.get(segment.as_str()).copied()?
        };
        json = next.get();
        current = Some(next);
    }
    current
}

/// A key value as compared: numbers numerically, strings byte by byte (RFC 3339 timestamps in
/// one format and offset, as backends emit them, sort correctly this way).
#[derive(Debug, PartialEq, PartialOrd)]
enum Comparable {
    Int(i128),
    Float(f64),
    Str(String),
}

fn comparable(value: &RawValue) -> Option<Comparable> {
    let text = value.get();
    if text.starts_with('"') {
        return serde_json::from_str(text).ok().map(Comparable::Str);
    }
    if let Ok(i) = text.parse::<i128>() {
        return Some(Comparable::Int(i));
    }
    text.parse::<f64>().ok().map(Comparable::Float)
}

fn compare_one(a: &RawValue, b: &RawValue) -> Option<Ordering> {
    match (comparable(a)?, comparable(b)?) {
        (Comparable::Int(x), Comparable::Int(y)) => Some(x.cmp(&y)),
        (Comparable::Int(x), Comparable::Float(y)) => (x as f64).partial_cmp(&y),
        (Comparable::Float(x), Comparable::Int(y)) => x.partial_cmp(&(y as f64)),
        (Comparable::Float(x), Comparable::Float(y)) => x.partial_cmp(&y),
        (Comparable::Str(x), Comparable::Str(y)) => Some(x.cmp(&y)),
        _ => None,
    }
}

/// Whether `next` comes strictly after `prev` in the route's order (tuple order for compound
/// keys). Values of different types never do.
pub(crate) fn strictly_after(prev: &[Box<RawValue>], next: &[Box<RawValue>], order: Order) -> bool {
    for (a, b) in prev.iter().zip(next) {
        match compare_one(a, b) {
            None => return false,
            Some(Ordering::Equal) => {}
            Some(Ordering::Less) => return order == Order::Asc,
            Some(Ordering::Greater) => return order == Order::Desc,
        }
    }
    false
}

#[cfg(test)]
mod tests;
