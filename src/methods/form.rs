//! `_method` inside request bodies. Rack's `MethodOverride`, Laravel and Symfony read the
//! override from a form body, so `POST /events` with `_method=GET&limit=99999` runs the GET
//! list handler with a limit pagegate never saw. A form body [`wanted`] is read (up to
//! [`MAX_FORM_BYTES`]; larger: 413) and refused when it names another standard method;
//! otherwise it is forwarded as read. Off list paths, a form whose `_method` could reach
//! another route is scanned as it streams instead, with no size cap (`scan`), and so is a POST
//! body with no type on any path (Rack reads it as a form; reading it whole would cap uploads),
//! and a JSON body (Laravel reads its top-level keys as form parameters). What counts as a
//! form is what the laxest backend reads as one (`form_kind`); one sent compressed is refused
//! (`encoded`).

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Either;
use http::header;
use http_body_util::BodyExt;
use tower::{Layer, Service};

use super::MethodError;
use crate::{BoxError, Request, Response};

mod scan;

use scan::{Scan, Scanned};

/// Most bytes of a form body read on a list path (64 KiB); a larger one gets 413.
pub(crate) const MAX_FORM_BYTES: usize = 64 * 1024;

/// Marks a request whose form body is read for `_method` (set by the router), for
/// [`FormCheckLayer`]: the methods, by bit of the standard list, it must not override to (a
/// read, or one that would take it to another route).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckForm(pub u16);

/// Marks a request off list paths whose form body is scanned as it streams (set by the
/// router): the methods, by bit of the standard list, that would take it to another route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanForm(pub u16);

/// Whether `req` carries a body still to come that a backend may read `_method` from: a form
/// (urlencoded or multipart, or a POST body with no type) or JSON (Laravel and Express
/// `method-override` read it there).
pub(crate) fn has_form(req: &Request) -> bool {
    !http_body::Body::is_end_stream(req.body()) && form_kind(req).is_some()
}

/// Whether the media types `req`'s `Content-Type` names disagree about its body's kind: several
/// fields (RFC 9110 makes it a singleton; Node keeps the first, Rack the last joined, Go's
/// `Header.Get` the first), or a list in one (Rack and PHP cut at the `,`, other parsers
/// refuse it or keep another entry), where one entry reads as a form of one kind and another
/// does not, or as the other kind: a backend keeping the other could parse a form (and its
/// `_method`) pagegate did not scan for. Repeats that agree (a proxy's duplicated
/// `application/json`) pass.
pub(crate) fn ambiguous_type(req: &Request) -> bool {
    if http_body::Body::is_end_stream(req.body()) {
        return false;
    }
    let untyped = untyped(req);
    let mut kinds = media_types(req).map(|entry| kind_of(entry, untyped).map(|(kind, _)| kind));
    let Some(first) = kinds.next() else {
        return false;
    };
    first == Some(Form::Mixed) || kinds.any(|kind| kind != first || kind == Some(Form::Mixed))
}

/// Every media type of `req`'s `Content-Type` fields: each field split at each `,` outside a
/// quoted string (a boundary may hold one, quoted).
fn media_types(req: &Request) -> impl Iterator<Item = &[u8]> {
    req.headers()
        .get_all(header::CONTENT_TYPE)
        .iter()
        .flat_map(|value| {
            let (mut quoted, mut escaped) = (false, false);
            // `split` asks about each byte once, in order: the quote state follows the text.
            value.as_bytes().split(move |&b| {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' if quoted => escaped = true,
                    b'"' => quoted = !quoted,
                    b',' => return !quoted,
                    _ => {}
                }
                false
            })
        })
}

/// Whether the form body of `req`, landing `at`, is read for `_method`: a typed form on a
/// list path.
/// Elsewhere forms are not read whole (that would cap every upload at [`MAX_FORM_BYTES`] and
/// let a slow body hold a slot before any stall timeout runs); where an override could reach
/// another route they are scanned as they stream ([`ScanForm`], see `scan`).
/// A POST body with no type is scanned instead, on list paths too: it may be a form to Rack,
/// but reading it whole would cap every untyped upload, and so is JSON (list routes take
/// JSON POSTs of any size).
pub(crate) fn wanted(req: &Request, at: super::Landing) -> bool {
    at.list_path
        && !http_body::Body::is_end_stream(req.body())
        && form_kind(req).is_some_and(|(kind, typed)| {
            typed && matches!(kind, Form::UrlEncoded | Form::Multipart)
        })
}

/// Whether `req`'s body is encoded (`Content-Encoding` other than `identity`): Express's
/// body-parser inflates gzip, deflate and br before `method-override` reads `_method`, but a
/// scan of the encoded bytes would find nothing.
pub(crate) fn encoded(req: &Request) -> bool {
    crate::http1::list_items(req.headers(), header::CONTENT_ENCODING)
        .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity"))
}

/// Reads form bodies on list paths and refuses those that override the method to a read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FormCheckLayer;

impl<S> Layer<S> for FormCheckLayer {
    type Service = FormCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FormCheck { inner }
    }
}

/// The service of [`FormCheckLayer`].
#[derive(Debug, Clone)]
pub(crate) struct FormCheck<S> {
    inner: S,
}

/// What kind of form a body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    UrlEncoded,
    Multipart,
    /// JSON: Laravel reads a JSON body's top-level keys as its form parameters.
    Json,
    /// A form type also marked JSON (`…; x=+json`): Laravel reads JSON, Rack the form. Refused
    /// as ambiguous ([`ambiguous_type`]); scanned both ways should it ever pass.
    Mixed,
}

/// The form `req`'s body is to the laxest backend, and whether its `Content-Type` says so.
/// Rack parses a POST with no type (or an empty one) as urlencoded; Rack cuts the media type
/// at `;` or `,`, PHP at those or a space; and of several media types a server may keep any:
/// one that reads as a form makes the body a form (a body still to come whose types disagree
/// is refused first, [`ambiguous_type`]).
fn form_kind(req: &Request) -> Option<(Form, bool)> {
    let untyped = untyped(req);
    let mut types = media_types(req).peekable();
    if types.peek().is_none() {
        return untyped;
    }
    types.find_map(|entry| kind_of(entry, untyped))
}

/// What a body with no type is to Rack: a POST's, an urlencoded form (not typed so).
fn untyped(req: &Request) -> Option<(Form, bool)> {
    (req.method() == http::Method::POST).then_some((Form::UrlEncoded, false))
}

/// The form one media type makes a body, as the laxest backend reads it (cut at `;`, `,` or
/// whitespace; an empty one is `untyped`), and whether it says so.
///
/// * A multipart type with no boundary is urlencoded: Rack finds none and parses the body
///   as a query string (no multipart parser can read it).
/// * Laravel reads the body as JSON when the field holds `/json` or `+json` anywhere, its
///   parameters included: any other type so marked is JSON, and a form so marked is
///   [`Form::Mixed`].
fn kind_of(entry: &[u8], untyped: Option<(Form, bool)>) -> Option<(Form, bool)> {
    let value = entry.trim_ascii_start();
    let end = value
        .iter()
        .position(|&b| b == b';' || b == b',' || b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let essence = &value[..end];
    let form = if essence.is_empty() {
        untyped
    } else if essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
        Some((Form::UrlEncoded, true))
    } else if essence
        .get(..10)
        .is_some_and(|head| head.eq_ignore_ascii_case(b"multipart/"))
    {
        let kind = if has_boundary(value) {
            Form::Multipart
        } else {
            Form::UrlEncoded
        };
        Some((kind, true))
    } else {
        None
    };
    let json = value
        .windows(5)
        .any(|w| w[1..].eq_ignore_ascii_case(b"json") && matches!(w[0], b'/' | b'+'));
    match (form, json) {
        (Some(_), true) => Some((Form::Mixed, true)),
        (None, true) => Some((Form::Json, true)),
        (form, false) => form,
    }
}

/// Whether a multipart type names a boundary as Rack reads one: `boundary=` anywhere (any
/// case), then an optional `"` and a byte that is none of `";,`.
fn has_boundary(value: &[u8]) -> bool {
    const NAME: &[u8] = b"boundary=";
    value
        .windows(NAME.len())
        .enumerate()
        .filter(|(_, w)| w.eq_ignore_ascii_case(NAME))
        .any(|(at, _)| {
            let rest = &value[at + NAME.len()..];
            let rest = rest.strip_prefix(b"\"").unwrap_or(rest);
            rest.first()
                .is_some_and(|b| !matches!(b, b'"' | b';' | b','))
        })
}

type Checked<F> = Either<F, Ready<Result<Response, BoxError>>>;

impl<S> Service<Request> for FormCheck<S>
where
    S: Service<Request, Response = Response, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future =
        Either<S::Future, Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The router marks the few requests a form could move; the rest pass at the cost of
        // two lookups, their content type never read.
        let scan = req
            .extensions()
            .get::<ScanForm>()
            .map(|&ScanForm(moves)| moves);
        if let Some((moves, (kind, _))) = scan.and_then(|moves| Some((moves, form_kind(&req)?))) {
            let req = req.map(|body| Scanned::new(body, Scan::new(kind, moves)).boxed());
            return Either::Left(self.inner.call(req));
        }
        let whole = req
            .extensions()
            .get::<CheckForm>()
            .map(|&CheckForm(moves)| moves);
        let Some((moves, (kind, _))) = whole.and_then(|moves| Some((moves, form_kind(&req)?)))
        else {
            return Either::Left(self.inner.call(req));
        };
        let mut inner = self.inner.clone();
        let (parts, body) = req.into_parts();
        // Combinators, not an async block over the generic inner future (rust-lang/rust#110338).
        Either::Right(Box::pin(
            read_capped(body)
                .map(move |read| -> Checked<S::Future> {
                    let bytes = match read {
                        Ok(bytes) => bytes,
                        Err(error) => return Either::Right(ready(Err(error))),
                    };
                    if let Err(error) = check(kind, &bytes, moves) {
                        return Either::Right(ready(Err(error.into())));
                    }
                    Either::Left(inner.call(Request::from_parts(parts, crate::body::full(bytes))))
                })
                .flatten(),
        ))
    }
}

/// The form's bytes, copied into one buffer of at most [`MAX_FORM_BYTES`] (larger: 413).
/// Collecting the frames instead would keep each one's slice of hyper's read buffer alive, so
/// a form sent a byte a frame would pin about 8 KiB a byte.
async fn read_capped(mut body: crate::Body) -> Result<Bytes, BoxError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if crate::body::append_capped(&mut out, &data, MAX_FORM_BYTES) < data.len() {
            return Err(MethodError::FormTooLarge {
                max: MAX_FORM_BYTES,
            }
            .into());
        }
    }
    Ok(Bytes::from(out))
}

/// Refuses a form whose `_method` (any case, PHP-folded; for multipart, a part so named)
/// overrides its method to one of `moves`: read by the same scan as streamed forms.
fn check(kind: Form, bytes: &Bytes, moves: u16) -> Result<(), MethodError> {
    let mut scan = Scan::new(kind, moves);
    scan.feed(bytes);
    scan.end().map_or(Ok(()), Err)
}
