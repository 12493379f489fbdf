//! The pagination policy of a list route: bounds, parameters, response guard and keyset.

use std::sync::Arc;

use serde_saphyr::Spanned;

use super::Problems;
use crate::config::defaults::*;
use crate::config::file::*;
use crate::config::*;
use crate::cursor::{CursorCodec, keyset_id};
use crate::list::scan::ItemsPath;

/// A route's `list`: its pagination policy, every problem reported where it is written.
pub(super) fn list(
    p: &mut Problems,
    route: &str,
    l: &Spanned<FileList>,
    cursors: Option<&Arc<CursorCodec>>,
) -> ListPolicy {
    let f = &l.value;
    let limit_param = p.param(f.limit_param.as_ref(), "limit_param", DEFAULT_LIMIT_PARAM);
    let offset = offset(p, f);
    let (default_limit, max_limit) = limits(p, l);
    // Below max_limit it bounds the page size asked of the backend too (see `page_size`).
    let max_items = positive(p, f.max_items.as_ref(), "max_items", max_limit);
    if limit_param == offset.name() {
        let at = f
            .limit_param
            .as_ref()
            .or(f.offset_param.as_ref())
            .or(f.page_param.as_ref());
        if let Some(at) = at {
            p.invalid(
                at,
                "limit_param",
                format!(
                    "and the offset parameter are both `{limit_param}`: give each its own name"
                ),
            );
        }
    }
    // A page is held in memory, so its bound stays small.
    let max_bytes = p.size(
        f.max_bytes.as_ref(),
        "max_bytes",
        DEFAULT_MAX_BYTES,
        (1024, MAX_MAX_BYTES),
        "a page is held in memory, so ",
    );
    let items = items(p, f);
    let keyset = f.keyset.as_ref().and_then(|k| {
        let reserved = [limit_param.as_str(), offset.name()];
        let on = (route, &offset, !items.0.is_empty());
        keyset(p, f, k, on, &reserved, cursors).map(Arc::new)
    });
    ListPolicy {
        limit_param,
        offset,
        default_limit,
        max_limit,
        max_offset: f
            .max_offset
            .as_ref()
            .map_or(DEFAULT_MAX_OFFSET, |m| m.value.0),
        on_violation: match f.on_violation {
            None | Some(FileViolation::Clamp) => OnViolation::Clamp,
            Some(FileViolation::Reject) => OnViolation::Reject,
        },
        max_items,
        max_bytes,
        items,
        on_invalid: match f.on_invalid {
            None | Some(FileInvalid::Pass) => OnInvalid::Pass,
            Some(FileInvalid::Reject) => OnInvalid::Reject,
        },
        keyset,
        report_only: f.report_only.unwrap_or(false),
    }
}

/// `offset_param`, or `page_param` with `first_page`: how a backend reads its position.
fn offset(p: &mut Problems, f: &FileList) -> OffsetParam {
    match (&f.offset_param, &f.page_param) {
        (Some(o), Some(_)) => {
            p.invalid(
                o,
                "offset_param",
                "and `page_param` are both set: a backend reads its position one way; keep one"
                    .to_owned(),
            );
            OffsetParam::Offset(o.value.clone())
        }
        (None, Some(page)) => OffsetParam::Page {
            name: p.param(Some(page), "page_param", ""),
            first: f
                .first_page
                .as_ref()
                .map_or(DEFAULT_FIRST_PAGE, |v| v.value.0),
        },
        (o, None) => {
            if let Some(first) = &f.first_page {
                p.invalid(
                    first,
                    "first_page",
                    "is only read with `page_param`: remove it".to_owned(),
                );
            }
            OffsetParam::Offset(p.param(o.as_ref(), "offset_param", DEFAULT_OFFSET_PARAM))
        }
    }
}

/// `default_limit` and `max_limit`, the first at most the second.
fn limits(p: &mut Problems, l: &Spanned<FileList>) -> (u64, u64) {
    let f = &l.value;
    let default_limit = positive(
        p,
        f.default_limit.as_ref(),
        "default_limit",
        DEFAULT_DEFAULT_LIMIT,
    );
    let max_limit = positive(
        p,
        f.max_limit.as_ref(),
        "max_limit",
        DEFAULT_MAX_LIMIT.max(default_limit),
    );
    if max_limit < default_limit {
        let at = f.max_limit.as_ref().map_or(l.referenced, |m| m.referenced);
        p.0.push(Located {
            at: Some(at.into()),
            problem: ConfigProblem::MaxBelowDefault {
                default: default_limit,
                max: max_limit,
            },
        });
    }
    (default_limit, max_limit)
}

/// `items`: a JSON pointer to the array of an envelope response.
fn items(p: &mut Problems, f: &FileList) -> ItemsPath {
    let Some(pointer) = &f.items else {
        return ItemsPath(Vec::new());
    };
    if let Some(path) = parse_pointer(&pointer.value) {
        return ItemsPath(path);
    }
    p.invalid(
        pointer,
        "items",
        format!(
            "is {:?}: write a JSON pointer to the array, such as /data, or \"\" for a top-level array",
            pointer.value
        ),
    );
    ItemsPath(Vec::new())
}

/// The most items a page may be asked for: far above any page a client should read at once,
/// and far below where `limit + 1` (a keyset route's probe) could overflow.
const MAX_PAGE_ITEMS: u64 = 1_000_000;

/// A page size (`max_limit`, `default_limit`, `max_items`): 1 to [`MAX_PAGE_ITEMS`].
fn positive(
    p: &mut Problems,
    value: Option<&Spanned<Whole>>,
    key: &'static str,
    default: u64,
) -> u64 {
    match value {
        Some(v) if v.value.0 == 0 => {
            p.invalid(v, key, "is 0: it must be at least 1".to_owned());
            default
        }
        Some(v) if v.value.0 > MAX_PAGE_ITEMS => {
            let reason = format!(
                "is {}: a page holds at most {MAX_PAGE_ITEMS} items",
                v.value.0
            );
            p.invalid(v, key, reason);
            default
        }
        Some(v) => v.value.0,
        None => default,
    }
}

/// `keyset`: the key fields and the parameters the backend filters by. `(route, offset,
/// envelope)`: the route's name, how it pages by offset, and whether its items sit in an
/// envelope; `reserved`, the parameters it already uses.
fn keyset(
    p: &mut Problems,
    list: &FileList,
    k: &Spanned<FileKeyset>,
    (route, offset, envelope): (&str, &OffsetParam, bool),
    reserved: &[&str],
    cursors: Option<&Arc<CursorCodec>>,
) -> Option<KeysetPolicy> {
    let Some(codec) = cursors else {
        p.invalid(
            k,
            "keyset",
            format!(
                "on route `{route}` needs cursor signing keys: add `cursors: {{keys: [{{id: 1, secret_env: PAGEGATE_CURSOR_SECRET}}]}}` at the top level"
            ),
        );
        return None;
    };
    if let (OffsetParam::Page { .. }, Some(page)) = (offset, &list.page_param) {
        p.invalid(
            page,
            "page_param",
            "cannot be combined with `keyset`: keyset pages ask for one extra row, which shifts page numbers; use offset_param (or leave it out) on keyset routes".to_owned(),
        );
    }
    let f = &k.value;
    let count = f.keys.value.len();
    if !(1..=2).contains(&count) {
        p.invalid(
            &f.keys,
            "keys",
            format!("has {count} entries: declare one key column, or two for a compound key such as (created_at, id)"),
        );
        return None;
    }
    let cursor_param = p.param(
        f.cursor_param.as_ref(),
        "cursor_param",
        DEFAULT_CURSOR_PARAM,
    );
    let mut taken: Vec<String> = reserved.iter().map(|s| (*s).to_owned()).collect();
    if let Some(at) = f
        .cursor_param
        .as_ref()
        .filter(|_| taken.contains(&cursor_param))
    {
        p.invalid(
            at,
            "cursor_param",
            format!("`{cursor_param}` is already used by this route: each parameter has one job"),
        );
    }
    taken.push(cursor_param.clone());
    let keys = key_fields(p, f, &mut taken);
    let set_params = set_params(p, k, &taken);
    check_next_cursor_field(p, f, envelope);
    let order = match f.order {
        None | Some(FileOrder::Asc) => Order::Asc,
        Some(FileOrder::Desc) => Order::Desc,
    };
    Some(KeysetPolicy {
        route_id: keyset_route_id(route, &keys, order, &set_params),
        keys,
        order,
        set_params,
        cursor_param,
        next_cursor_field: f.next_cursor_field.as_ref().map(|f| f.value.clone()),
        codec: Arc::clone(codec),
    })
}

/// The id a keyset route's cursors carry: its name and everything that gives a key value its
/// place (the fields, their parameters, the order, the parameters always sent), so a cursor
/// minted before any of them changed is refused rather than sent on under the new meaning.
fn keyset_route_id(
    route: &str,
    keys: &[KeyField],
    order: Order,
    set_params: &[(String, String)],
) -> u64 {
    let order = match order {
        Order::Asc => "asc",
        Order::Desc => "desc",
    };
    let mut definition = vec![order];
    for key in keys {
        definition.extend(["key", key.field.as_str(), key.param.as_str()]);
    }
    for (name, value) in set_params {
        definition.extend(["set", name.as_str(), value.as_str()]);
    }
    keyset_id(route, &definition)
}

/// `keys`: JSON pointers into each item and the parameter each is sent in, every parameter
/// not yet `taken` (and taken by it).
fn key_fields(p: &mut Problems, f: &FileKeyset, taken: &mut Vec<String>) -> Vec<KeyField> {
    let mut keys = Vec::new();
    for key in &f.keys.value {
        if !key.value.field.value.starts_with('/')
            || parse_pointer(&key.value.field.value).is_none()
        {
            p.invalid(
                &key.value.field,
                "field",
                format!(
                    "is {:?}: write a JSON pointer into each item, such as /id",
                    key.value.field.value
                ),
            );
        }
        let param = p.param(Some(&key.value.param), "param", "");
        if taken.contains(&param) {
            p.invalid(
                &key.value.param,
                "param",
                format!("`{param}` is already used by this route: each parameter has one job"),
            );
        }
        taken.push(param.clone());
        keys.push(KeyField::new(key.value.field.value.clone(), param));
    }
    keys
}

/// `set_params`: parameters always sent so the backend sorts by the key, percent-encoded.
fn set_params(
    p: &mut Problems,
    k: &Spanned<FileKeyset>,
    taken: &[String],
) -> Vec<(String, String)> {
    let mut set_params = Vec::new();
    for (name, value) in &k.value.set_params {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~[]".contains(&b));
        if !valid || taken.contains(name) {
            p.invalid(
                k,
                "set_params",
                format!("sets {name:?}: use a parameter name (letters, digits, -_.~[]) this route does not already use for paging"),
            );
        }
        // Values are sent as written, percent-encoded: `created_at desc` → `created_at+desc`.
        let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        set_params.push((name.clone(), encoded));
    }
    set_params
}

/// `next_cursor_field`: a plain field name, in an envelope response.
fn check_next_cursor_field(p: &mut Problems, f: &FileKeyset, envelope: bool) {
    let Some(field) = &f.next_cursor_field else {
        return;
    };
    if !envelope {
        p.invalid(
            field,
            "next_cursor_field",
            "needs an envelope response: set `items: /data` (or wherever the array is), or remove it and rely on the Link header".to_owned(),
        );
    }
    if field.value.is_empty() || field.value.contains(['"', '\\']) {
        p.invalid(
            field,
            "next_cursor_field",
            format!("is {:?}: write a plain field name", field.value),
        );
    }
}
