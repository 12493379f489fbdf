//! `_method` inside request bodies. Rack's `MethodOverride`, Laravel and Symfony read the
//! override from a form body, so `POST /events` with `_method=GET&limit=99999` runs the GET
//! list handler with a limit pagegate never saw. A form body [`wanted`] is read (up to
//! [`MAX_FORM_BYTES`]; larger: 413) and refused when it names another standard method;
//! otherwise it is forwarded as read. Off list paths, a form whose `_method` could reach
//! another route is scanned as it streams instead, with no size cap (`scan`), and so is a POST
//! body with no type on any path (Rack reads it as a form; reading it whole would cap uploads).
//! What counts as a form is what the laxest backend reads as one (`form_kind`).

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Either;
use http::header;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::{Layer, Service};

use super::MethodError;
use crate::{BoxError, Request, Response};

mod scan;

use scan::{Scan, Scanned};

/// Most bytes of a form body read on a list path (64 KiB); a larger one gets 413.
pub(crate) const MAX_FORM_BYTES: usize = 64 * 1024;

/// Marks a request whose form body is read for `_method` (set by the router), for
/// [`FormCheckLayer`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckForm;

/// Marks a request off list paths whose form body is scanned as it streams (set by the
/// router): the methods, by bit of the standard list, that would take it to another route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanForm(pub u16);

/// Whether `req` carries a form body (urlencoded or multipart, or a POST body with no type)
/// still to come.
pub(crate) fn has_form(req: &Request) -> bool {
    !http_body::Body::is_end_stream(req.body()) && form_kind(req).is_some()
}

/// What makes the type of `req`'s body ambiguous, if anything: several `Content-Type` fields
/// (RFC 9110 makes it a singleton; Node keeps the first, Rack the last joined, Go's
/// `Header.Get` the first), or a list in one (a `,` outside quotes: Rack and PHP cut there,
/// a list-splitting parser may keep the last). A legitimate client sends neither, and either
/// could hide a multipart form (and its `_method`) from the kind pagegate scanned for.
pub(crate) fn ambiguous_type(req: &Request) -> Option<&'static str> {
    if http_body::Body::is_end_stream(req.body()) {
        return None;
    }
    let mut types = req.headers().get_all(header::CONTENT_TYPE).iter();
    let first = types.next()?;
    if types.next().is_some() {
        return Some("several Content-Type fields");
    }
    let mut quoted = false;
    let mut escaped = false;
    for &b in first.as_bytes() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => return Some("a list of types in Content-Type"),
            _ => {}
        }
    }
    None
}

/// Whether the form body of `req`, landing `at`, is read for `_method`: a form on a list path.
/// Elsewhere forms are not read whole (that would cap every upload at [`MAX_FORM_BYTES`] and
/// let a slow body hold a slot before any stall timeout runs); where an override could reach
/// another route they are scanned as they stream ([`ScanForm`], see `scan`).
/// A POST body with no type is scanned instead, on list paths too: it may be a form to Rack,
/// but reading it whole would cap every untyped upload.
pub(crate) fn wanted(req: &Request, at: super::Landing) -> bool {
    at.list_path
        && !http_body::Body::is_end_stream(req.body())
        && form_kind(req).is_some_and(|(_, typed)| typed)
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
}

/// The form `req`'s body is to the laxest backend, and whether its `Content-Type` says so.
/// Rack parses a POST with no type (or an empty one) as urlencoded; Rack cuts the media type
/// at `;` or `,`, PHP at those or a space; and of several `Content-Type` fields a server may
/// keep any: one that reads as a form makes the body a form (a body still to come under
/// several is refused first, [`ambiguous_type`]).
fn form_kind(req: &Request) -> Option<(Form, bool)> {
    let untyped = (req.method() == http::Method::POST).then_some((Form::UrlEncoded, false));
    let mut types = req
        .headers()
        .get_all(header::CONTENT_TYPE)
        .iter()
        .peekable();
    if types.peek().is_none() {
        return untyped;
    }
    types.find_map(|value| {
        let value = value.as_bytes().trim_ascii_start();
        let end = value
            .iter()
            .position(|&b| b == b';' || b == b',' || b.is_ascii_whitespace())
            .unwrap_or(value.len());
        let essence = &value[..end];
        if essence.is_empty() {
            untyped
        } else if essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
            Some((Form::UrlEncoded, true))
        } else if essence
            .get(..10)
            .is_some_and(|head| head.eq_ignore_ascii_case(b"multipart/"))
        {
            Some((Form::Multipart, true))
        } else {
            None
        }
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
        if let (Some(&ScanForm(moves)), Some((kind, _))) =
            (req.extensions().get::<ScanForm>(), form_kind(&req))
        {
            let req = req.map(|body| Scanned::new(body, Scan::new(kind, moves)).boxed());
            return Either::Left(self.inner.call(req));
        }
        let (Some(_), Some((kind, _))) = (req.extensions().get::<CheckForm>(), form_kind(&req))
        else {
            return Either::Left(self.inner.call(req));
        };
        let mut inner = self.inner.clone();
        let (parts, body) = req.into_parts();
        // Combinators, not an async block over the generic inner future (rust-lang/rust#110338).
        Either::Right(Box::pin(
            Limited::new(body, MAX_FORM_BYTES)
                .collect()
                .map(move |collected| -> Checked<S::Future> {
                    let bytes = match collected {
                        Ok(collected) => collected.to_bytes(),
                        Err(error) if error.is::<LengthLimitError>() => {
                            return Either::Right(ready(Err(MethodError::FormTooLarge {
                                max: MAX_FORM_BYTES,
                            }
                            .into())));
                        }
                        Err(error) => return Either::Right(ready(Err(error))),
                    };
                    if let Err(error) = check(kind, &bytes, &parts.method) {
                        return Either::Right(ready(Err(error.into())));
                    }
                    Either::Left(inner.call(Request::from_parts(parts, crate::body::full(bytes))))
                })
                .flatten(),
        ))
    }
}

/// Refuses a form whose `_method` (any case, PHP-folded; for multipart, a part so named)
/// overrides its method to GET or HEAD: read by the same scan as streamed forms.
fn check(kind: Form, bytes: &Bytes, own: &http::Method) -> Result<(), MethodError> {
    let reads = super::moves(|m| (m == http::Method::GET || m == http::Method::HEAD) && m != own);
    let mut scan = Scan::new(kind, reads);
    scan.feed(bytes);
    scan.end().map_or(Ok(()), Err)
}
