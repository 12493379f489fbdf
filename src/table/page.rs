//! A page: one keyset query of `limit + 1` rows (the extra row says whether a next page
//! exists), answered `{"data":[…],"next_cursor":"…"}` with `Link: rel="next"`. Its cost is the
//! same at any depth. The next cursor carries the last row's key as text; a key too long for a
//! cursor is answered 500 `key-too-long` rather than linked to a cursor `decode` would refuse.
//! Each row is written into the body as it comes, and the page ends after the row that reaches
//! `page_bytes`, its next cursor from there: a page of wide rows holds one copy of them, at
//! most that many bytes and two rows (the one that crossed, and the probe).

use std::time::SystemTime;

use http::{HeaderValue, header};
use serde_json::value::RawValue;

use super::params::Params;
use super::resource::Resource;
use super::running::{self, Ctx, key_of};
use super::sql::{self, Shape};
use super::{Catalog, PgError};
use crate::Response;
use crate::cursor::{CursorError, MAX_KEY_JSON_LEN, NextPage, binding_hash, next_page};

/// The key values a cursor carries, each the text of a JSON string.
fn cursor_key(resource: &Resource, cursor: &str, binding: u64) -> Result<Vec<String>, CursorError> {
    let values = resource.codec().decode(
        cursor,
        resource.route_id(),
        binding,
        resource.table().key.len(),
        SystemTime::now(),
    )?;
    values
        .iter()
        .map(|v| serde_json::from_str::<String>(v.get()).map_err(|_| CursorError::WrongFilters))
        .collect()
}

pub(super) async fn page(
    resource: &Resource,
    catalog: &Catalog,
    path: &str,
    mut params: Params,
    ctx: &Ctx,
) -> Result<Response, PgError> {
    let table = resource.table();
    let listed: Vec<&str> = params.bound.iter().map(String::as_str).collect();
    let binding = binding_hash(&listed, params.binding.iter().map(String::as_str));
    let after = match &params.cursor {
        None => None,
        Some(cursor) => Some(cursor_key(resource, cursor, binding)?),
    };
    let limit = params.limit.unwrap_or(table.default_limit);
    let fields = params
        .fields
        .take()
        .unwrap_or_else(|| table.default_fields.clone());
    let statement = sql::select(
        table,
        catalog,
        &fields,
        Shape::Json,
        &params.filters,
        after.as_deref(),
        limit + 1,
    );
    let mut running = resource.connection(false, ctx).await?;
    let bound = usize::try_from(table.page_bytes).unwrap_or(usize::MAX);
    let (mut body, mut last, mut count) = (String::from("{\"data\":["), None, 0);
    let mut probe = false;
    let cut = running
        .each_row(&statement, |row| {
            // The row past `limit` only says that a next page exists; the statement's end
            // follows it (`LIMIT limit + 1`), so it is read to there and the connection kept.
            if count == limit {
                probe = true;
                return Ok(true);
            }
            if count > 0 {
                body.push(',');
            }
            body.push_str(running::value::<&str>(&row, 0)?);
            (count, last) = (count + 1, Some(row));
            // At the bound, the page ends here; at its last row, the probe is still read.
            Ok(body.len() < bound || count == limit)
        })
        .await;
    // Cut at `page_bytes` before the statement's end: a next page may exist.
    let more = match cut {
        Ok(cut) => cut || probe,
        Err(error) => {
            // Its place back first: finding the value to blame takes one, and with
            // `max_connections: 1` (or every place held by such a request) it would wait for
            // its own.
            drop(running);
            return Err(resource.answer(error, catalog, &params.offered, ctx).await);
        }
    };
    body.push_str("],\"next_cursor\":");
    let mut link = None;
    match last.as_ref().filter(|_| more) {
        Some(last) => {
            let mut base = format!("{path}?");
            for kept in &params.kept {
                base.push_str(kept);
                base.push('&');
            }
            base.push_str("cursor=");
            let next = next_cursor(resource, &key_of(last, 1, table.key.len())?, binding, &base)?;
            body.push_str(
                &serde_json::to_string(&next.cursor).unwrap_or_else(|_| "null".to_owned()),
            );
            link = next.link;
        }
        None => body.push_str("null"),
    }
    body.push('}');
    // The page is held until written: in its bytes, not the buffer that doubled to hold them.
    let body = crate::body::trimmed_vec(body.into_bytes());
    let mut response = http::Response::new(crate::body::full(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(link) = link {
        headers.insert(header::LINK, link);
    }
    Ok(response)
}

/// The page after the row whose key is `key`; a key longer than a cursor carries is an error
/// naming its longest column, never a cursor `decode` refuses.
fn next_cursor(
    resource: &Resource,
    key: &[String],
    binding: u64,
    base: &str,
) -> Result<NextPage, PgError> {
    let raw: Vec<Box<RawValue>> = key
        .iter()
        .filter_map(|k| {
            serde_json::to_string(k)
                .ok()
                .and_then(|s| RawValue::from_string(s).ok())
        })
        .collect();
    let refs: Vec<&RawValue> = raw.iter().map(AsRef::as_ref).collect();
    let ids = (resource.route_id(), binding);
    next_page(resource.codec(), ids, &refs, base, SystemTime::now()).map_err(|too_long| {
        let column = resource
            .table()
            .key
            .get(too_long.longest)
            .map_or_else(String::new, |k| k.column.clone());
        tracing::error!(route = resource.route(), %column, bound = MAX_KEY_JSON_LEN, "a page's next key is longer than a cursor carries");
        PgError::KeyTooLong {
            column,
            bound: MAX_KEY_JSON_LEN,
        }
    })
}
