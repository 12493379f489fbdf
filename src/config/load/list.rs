//! The pagination policy of a list route: bounds, parameters, response guard and keyset.

use std::sync::Arc;

use serde_saphyr::Spanned;

use super::Problems;
use crate::config::defaults::*;
use crate::config::file::*;
use crate::config::*;
use crate::cursor::{CursorCodec, route_id};
use crate::list::scan::ItemsPath;

pub(super) fn list(
    p: &mut Problems,
    route: &str,
    l: &Spanned<FileList>,
    cursors: Option<&Arc<CursorCodec>>,
) -> ListPolicy {
    let f = &l.value;
    let limit_param = p.param(f.limit_param.as_ref(), "limit_param", DEFAULT_LIMIT_PARAM);
    let offset = match (&f.offset_param, &f.page_param) {
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
                .map_or(DEFAULT_FIRST_PAGE, |v| v.value),
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
    };
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
    // Below max_limit it still binds: such pages are cut (and say so) at max_items.
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
    let items = match &f.items {
        None => ItemsPath(Vec::new()),
        Some(pointer) => match parse_pointer(&pointer.value) {
            Some(path) => ItemsPath(path),
            None => {
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
        },
    };
    let keyset = f.keyset.as_ref().and_then(|k| {
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
        if let (OffsetParam::Page { .. }, Some(page)) = (&offset, &f.page_param) {
            p.invalid(
                page,
                "page_param",
                "cannot be combined with `keyset`: keyset pages ask for one extra row, which shifts page numbers; use offset_param (or leave it out) on keyset routes".to_owned(),
            );
        }
        let reserved = [limit_param.as_str(), offset.name()];
        keyset(p, route, k, &reserved, !items.0.is_empty(), codec).map(Arc::new)
    });
    ListPolicy {
        limit_param,
        offset,
        default_limit,
        max_limit,
        max_offset: f
            .max_offset
            .as_ref()
            .map_or(DEFAULT_MAX_OFFSET, |m| m.value),
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

fn positive(
    p: &mut Problems,
    value: Option<&Spanned<u64>>,
    key: &'static str,
    default: u64,
) -> u64 {
    match value {
        Some(v) if v.value == 0 => {
            p.invalid(v, key, "is 0: it must be at least 1".to_owned());
            default
        }
        Some(v) => v.value,
        None => default,
    }
}

/// Splits an RFC 6901 JSON pointer into unescaped segments; `""` is the whole document.
fn keyset(
    p: &mut Problems,
    route: &str,
    k: &Spanned<FileKeyset>,
    reserved: &[&str],
    envelope: bool,
    codec: &Arc<CursorCodec>,
) -> Option<KeysetPolicy> {
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
    let mut keys = Vec::new();
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
    let mut set_params = Vec::new();
    for (name, value) in &f.set_params {
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
    if let Some(field) = &f.next_cursor_field {
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
    Some(KeysetPolicy {
        keys,
        order: match f.order {
            None | Some(FileOrder::Asc) => Order::Asc,
            Some(FileOrder::Desc) => Order::Desc,
        },
        set_params,
        cursor_param,
        next_cursor_field: f.next_cursor_field.as_ref().map(|f| f.value.clone()),
        route_id: route_id(route),
        codec: Arc::clone(codec),
    })
}
