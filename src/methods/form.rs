//! `_method` inside request bodies. Rack's `MethodOverride`, Laravel and Symfony read the
//! override from a form body, so `POST /events` with `_method=GET&limit=99999` runs the GET
//! list handler with a limit pagegate never saw. A form body [`wanted`] is read (up to
//! [`MAX_FORM_BYTES`]; larger: 413) and refused when it names another standard method;
//! otherwise it is forwarded as read. Off list paths, a form whose `_method` could reach
//! another route is scanned as it streams instead, with no size cap (`scan`).

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

/// Whether `req` carries a form body (urlencoded or multipart) still to come.
pub(crate) fn has_form(req: &Request) -> bool {
    !http_body::Body::is_end_stream(req.body()) && form_kind(req).is_some()
}

/// Whether the form body of `req`, landing `at`, is read for `_method`: a form on a list path.
/// Elsewhere forms are not read whole (that would cap every upload at [`MAX_FORM_BYTES`] and
/// let a slow body hold a slot before any stall timeout runs); where an override could reach
/// another route they are scanned as they stream ([`ScanForm`], see `scan`).
pub(crate) fn wanted(req: &Request, at: super::Landing) -> bool {
    at.list_path && !http_body::Body::is_end_stream(req.body()) && form_kind(req).is_some()
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

fn form_kind(req: &Request) -> Option<Form> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => Some(Form::UrlEncoded),
        e if e.starts_with("multipart/") => Some(Form::Multipart),
        _ => None,
    }
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
        if let (Some(&ScanForm(moves)), Some(kind)) =
            (req.extensions().get::<ScanForm>(), form_kind(&req))
        {
            let req = req.map(|body| Scanned::new(body, Scan::new(kind, moves)).boxed());
            return Either::Left(self.inner.call(req));
        }
        let (Some(_), Some(kind)) = (req.extensions().get::<CheckForm>(), form_kind(&req)) else {
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
