//! A route's `path` and `methods` as written: checked one by one, each with its fix.

use http::Method;
use serde_saphyr::Spanned;

use crate::config::file::FileRoute;
use crate::config::load::values::Problems;

/// A route's `path`: absolute, ASCII, and fixed on table routes.
pub(super) fn check_path(p: &mut Problems, r: &FileRoute) {
    if r.table.is_some() && r.path.value.contains('{') {
        p.invalid(
            &r.path,
            "path",
            format!(
                "is {:?}: a table route's path is fixed (it also serves <path>/export)",
                r.path.value
            ),
        );
    }
    if !r.path.value.starts_with('/') {
        p.invalid(
            &r.path,
            "path",
            format!("is {:?}: a path starts with `/`", r.path.value),
        );
    }
    if r.path.value.contains(['?', '#']) {
        p.invalid(
            &r.path,
            "path",
            format!(
                "is {:?}: a route matches paths, never a query or a fragment; remove what \
                 follows `?` or `#`",
                r.path.value
            ),
        );
    }
    if !r.path.value.is_ascii() {
        let encoded: String = r
            .path
            .value
            .bytes()
            .map(|b| {
                if b.is_ascii() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        p.invalid(
            &r.path,
            "path",
            format!(
                "is {:?}: clients send non-ASCII characters percent-encoded; write {encoded}",
                r.path.value
            ),
        );
    }
}

/// A route's `methods`, each written in capitals.
pub(super) fn methods(p: &mut Problems, list: &Spanned<Vec<Spanned<String>>>) -> Vec<Method> {
    if list.value.is_empty() {
        p.invalid(
            list,
            "methods",
            "is empty: remove it to match every method".to_owned(),
        );
    }
    list.value
        .iter()
        .filter_map(|m| {
            let ok = !m.value.is_empty() && m.value.bytes().all(|b| b.is_ascii_uppercase());
            let method = Method::from_bytes(m.value.as_bytes()).ok().filter(|_| ok);
            if method.is_none() {
                p.invalid(
                    m,
                    "methods",
                    format!(
                        "contains {:?}: write methods in capitals, e.g. GET",
                        m.value
                    ),
                );
            }
            method
        })
        .collect()
}
