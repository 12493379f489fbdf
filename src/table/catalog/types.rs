//! Each column's type as the statements need it: the name a client's value is cast to, chosen
//! so that no cast can cut, pad, round or reinterpret a value.
//!
//! `format_type(oid, NULL)` names a type the way SQL spells it, and SQL's spelling carries a
//! default size: `character` is `char(1)`, `bit` is `bit(1)`. Cast to those, `acmecorp` becomes
//! `a` and a `char(8)` scope matches another tenant's rows. The cast here names the type by its
//! catalog name, schema-qualified and quoted (`pg_catalog.bpchar`, `pg_catalog."bit"`), which
//! carries no size (typmod -1): the value is read whole, and compares with the column by the
//! column's own operators, so the index it sorts by still serves. A domain whose base type has
//! a size (`CREATE DOMAIN code AS char(8)`) would apply that size, truncating on an explicit
//! cast: such a domain is cast to its base type instead, and arrays of it to the base's array.

use std::collections::HashMap;

use deadpool_postgres::Object;
use tokio_postgres::types::Type;

use super::{CheckError, refused};

/// One type of a column's chain: the column's type, then a domain's base type or an array's
/// element type, down to a plain type.
#[derive(Debug, Clone)]
struct Link {
    /// Schema-qualified, quoted catalog name (`pg_catalog.int4`, `public."Mood"`).
    name: String,
    /// A domain.
    domain: bool,
    /// An array.
    array: bool,
    /// The domain's size (`typtypmod`; -1: none).
    typmod: i32,
    /// Its array type's qualified name.
    array_name: Option<String>,
}

/// What the catalog says of one column's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    /// `format_type(oid, NULL)`: how casts and messages name it.
    pub(crate) sql_type: String,
    /// The type at the end of its domains (`sql_type` itself when it is no domain), as
    /// `format_type` writes it: how the output mappings read it, since PostgreSQL prints a
    /// domain's values as its base type's (a domain over `boolean` is `t`/`f` in `COPY`).
    pub(crate) base: String,
    /// As the table declares it, with its size (`character(8)`): how messages name it.
    pub(crate) declared: String,
    /// Its values have a bound length a cursor carries: fixed-size, sized up to 500
    /// characters (`varchar(64)`: at most 4 bytes each, 6 when JSON escapes them), or a sized
    /// `numeric`. A key of any other type (text, bytea, jsonb, `varchar(10000)`) may one day
    /// hold a value too long for a cursor.
    pub(crate) bounded: bool,
    /// The name a value is cast to ([`cast`]).
    pub(crate) cast: String,
    /// For an array: the name its elements are cast to.
    pub(crate) element: Option<String>,
    /// An array (of any element type, through domains).
    pub(crate) array: bool,
    /// A composite (row) type.
    pub(crate) composite: bool,
    /// Its category is JSON-like: `json`, `jsonb` or a domain over one.
    pub(crate) json: bool,
    /// NOT NULL.
    pub(crate) not_null: bool,
}

impl Column {
    /// `numeric`, or a domain over it (served as a JSON string, so no digit is lost).
    pub(crate) fn numeric(&self) -> bool {
        self.base == "numeric"
    }
}

/// The name to cast a value of the type `chain` describes to (see the module docs).
fn cast(chain: &[Link]) -> String {
    let Some(first) = chain.first() else {
        return "pg_catalog.text".to_owned();
    };
    if first.domain {
        let sized = chain
            .iter()
            .take_while(|l| l.domain)
            .any(|l| l.typmod != -1);
        return if sized {
            cast(&chain[1..])
        } else {
            first.name.clone()
        };
    }
    if first.array && chain.len() > 1 {
        let element = cast(&chain[1..]);
        if element == chain[1].name {
            return first.name.clone();
        }
        // The element was a sized domain: the array of the type it is cast to.
        return chain[1..]
            .iter()
            .find(|l| l.name == element)
            .and_then(|l| l.array_name.clone())
            .unwrap_or_else(|| first.name.clone());
    }
    first.name.clone()
}

/// Each column's chain of types, one row a link, in order: through domains to their base
/// type, and through arrays to their element type.
const CHAINS: &str = "WITH RECURSIVE chain(attnum, depth, oid) AS (
               SELECT a.attnum, 0, a.atttypid FROM pg_attribute a
               WHERE a.attrelid = to_regclass($1::text) AND a.attnum > 0 AND NOT a.attisdropped
               UNION ALL
               SELECT c.attnum, c.depth + 1,
                      CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END
               FROM chain c JOIN pg_type t ON t.oid = c.oid
               WHERE c.depth < 16
                 AND (t.typtype = 'd' OR (t.typcategory = 'A' AND t.typlen = -1 AND t.typelem <> 0)))
             SELECT a.attname::text, format_type(a.atttypid, NULL), a.attnotnull,
                    format('%I.%I', n.nspname, t.typname), t.typtype = 'd',
                    t.typcategory = 'A' AND t.typlen = -1 AND t.typelem <> 0, t.typtypmod,
                    (SELECT format('%I.%I', an.nspname, at.typname) FROM pg_type at
                       JOIN pg_namespace an ON an.oid = at.typnamespace WHERE at.oid = t.typarray),
                    t.typtype = 'c', t.oid IN ('json'::regtype, 'jsonb'::regtype),
                    format_type(a.atttypid, a.atttypmod),
                    format_type(t.oid, NULL),
                    t.typlen > 0 OR a.atttypmod BETWEEN 0 AND 504 OR t.typtypmod BETWEEN 0 AND 504
                      OR (t.oid = 'numeric'::regtype AND (a.atttypmod >= 0 OR t.typtypmod >= 0))
             FROM chain c JOIN pg_attribute a ON a.attrelid = to_regclass($1::text) AND a.attnum = c.attnum
             JOIN pg_type t ON t.oid = c.oid JOIN pg_namespace n ON n.oid = t.typnamespace
             ORDER BY c.attnum, c.depth";

/// Every column of `relation` (quoted), by name.
pub(crate) async fn read(
    client: &mut Object,
    relation: &str,
) -> Result<HashMap<String, Column>, CheckError> {
    let chains = client
        .query_typed(CHAINS, &[(&relation, Type::TEXT)])
        .await
        .map_err(refused)?;
    let mut links: Vec<(String, Vec<Link>, Column)> = Vec::new();
    for row in chains {
        let name: String = row.get(0);
        let link = Link {
            name: row.get(3),
            domain: row.get(4),
            array: row.get(5),
            typmod: row.get(6),
            array_name: row.get(7),
        };
        let (composite, json): (bool, bool) = (row.get(8), row.get(9));
        match links.last_mut().filter(|(n, _, _)| *n == name) {
            Some((_, chain, typed)) => {
                // Through domains: a domain over jsonb is JSON, one over a row type a row.
                let through_domains = chain.iter().all(|l| l.domain);
                typed.composite |= composite && through_domains;
                typed.json |= json && through_domains;
                typed.array |= link.array && through_domains;
                if through_domains {
                    // What the domains stand for: its values print and map as this type's.
                    typed.base = row.get(11);
                }
                chain.push(link);
            }
            None => {
                let sql_type: String = row.get(1);
                let typed = Column {
                    base: sql_type.clone(),
                    sql_type,
                    declared: row.get(10),
                    bounded: row.get(12),
                    cast: String::new(),
                    element: None,
                    array: link.array,
                    composite,
                    json,
                    not_null: row.get(2),
                };
                links.push((name, vec![link], typed));
            }
        }
    }
    Ok(links
        .into_iter()
        .map(|(name, chain, mut typed)| {
            typed.cast = cast(&chain);
            // The element of the first array through domains.
            typed.element = chain
                .iter()
                .position(|l| l.array)
                .filter(|at| chain[..*at].iter().all(|l| l.domain) && at + 1 < chain.len())
                .map(|at| cast(&chain[at + 1..]));
            (name, typed)
        })
        .collect())
}

#[cfg(test)]
mod tests;
