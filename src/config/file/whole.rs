//! [`Whole`]: a whole number as the file must write it.

use serde::de::{self, Deserializer, Visitor};

/// A whole number of 0 or more written as a number: `100`, never `'100'`. serde-saphyr reads a
/// quoted `'100'` into a `u64` without a word, but a string where a number belongs is most
/// often a template's quoting mistake, and other YAML readers (Kubernetes tooling, linters) see
/// a string there; so it is refused, with the fix. Written by hand: serde-saphyr has no option
/// for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Whole(pub(crate) u64);

impl<'de> serde::Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WholeVisitor)
    }
}

struct WholeVisitor;

/// What every refusal says to write.
const FIX: &str = "write digits only, such as 100";

impl Visitor<'_> for WholeVisitor {
    type Value = Whole;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a whole number of 0 or more ({FIX})")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Whole, E> {
        Ok(Whole(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Whole, E> {
        u64::try_from(v).map(Whole).map_err(|_| {
            E::custom(format!(
                "expected a whole number of 0 or more, found `{v}`: {FIX}"
            ))
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Whole, E> {
        Err(E::custom(format!(
            "expected a whole number of 0 or more, found `{v}`: {FIX}"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Whole, E> {
        // Digits reach here only quoted: a plain `100` is a number to the parser.
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E::custom(format!(
                "expected a whole number of 0 or more, found the quoted string '{v}': write it \
                 without quotes: {v}"
            )));
        }
        Err(E::custom(format!(
            "expected a whole number of 0 or more, found `{v}`: {FIX}"
        )))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Whole, E> {
        Err(E::custom(format!(
            "expected a whole number of 0 or more, found `{v}`: {FIX}"
        )))
    }
}
