//! `pagegate demo`: a naive list API, as the article's `GET /events` is written, with pagegate
//! in front of it. No other service is needed.
//!
//! The backend generates 1,000,000 rows (`id`, `status`, `created_at`, `user_id`, `message`)
//! on the fly. Like the article's endpoint it returns *every* row as one JSON array unless
//! `limit`, `offset` or `id_gt` narrow it, and `/events/export` streams all rows as CSV. It
//! streams its bodies so the demo itself stays small; the damage an unbounded list does to the
//! client and the network is the same.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::Body;

pub(crate) mod postgres;

/// The demo configuration, embedded so `pagegate demo` works from any directory.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.yaml");

/// Rows in the demo table.
pub const DEFAULT_ROWS: u64 = 1_000_000;

/// Rows rendered per body frame.
const ROWS_PER_FRAME: u64 = 500;

/// Serves the naive backend on `listener` until the task is dropped.
pub async fn serve_backend(listener: TcpListener, rows: u64) {
    loop {
        let (stream, _) = crate::server::accept(&listener, "demo backend").await;
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| async move {
            Ok::<_, Infallible>(handle(&req, rows))
        });
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn handle(req: &http::Request<Incoming>, rows: u64) -> http::Response<Body> {
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| -> Result<Option<u64>, ()> {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.parse::<u64>().map_err(drop))
            .transpose()
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/events") => {
            let (Ok(limit), Ok(offset), Ok(id_gt)) =
                (param("limit"), param("offset"), param("id_gt"))
            else {
                return plain(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "limit, offset and id_gt are integers\n",
                );
            };
            let first = id_gt
                .unwrap_or(0)
                .saturating_add(offset.unwrap_or(0))
                .saturating_add(1);
            let last = limit.map_or(rows, |l| {
                first.saturating_add(l).saturating_sub(1).min(rows)
            });
            stream(first, last, "application/json", Format::Json)
        }
        (&Method::GET | &Method::HEAD, "/events/export") => {
            stream(1, rows, "text/csv", Format::Csv)
        }
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Csv,
}

fn plain(status: StatusCode, text: &'static str) -> http::Response<Body> {
    let mut response = http::Response::new(crate::body::full(text));
    *response.status_mut() = status;
    response
}

/// Streams rows `first..=last`, one frame of [`ROWS_PER_FRAME`] rows at a time, on demand.
fn stream(
    first: u64,
    last: u64,
    content_type: &'static str,
    format: Format,
) -> http::Response<Body> {
    let frames = futures_util::stream::unfold(Some(first), move |next| async move {
        let next = next?;
        let mut out = String::with_capacity(128 * ROWS_PER_FRAME as usize);
        if next == first {
            out.push_str(match format {
                Format::Json => "[",
                Format::Csv => "id,status,created_at,user_id,message\n",
            });
        }
        // An empty range (first > last) renders no rows and closes at once.
        let end = last.min(next.saturating_add(ROWS_PER_FRAME - 1));
        for id in next..=end {
            row(&mut out, id, format, id == first);
        }
        let done = end >= last || next > last;
        if done && matches!(format, Format::Json) {
            out.push(']');
        }
        let frame: Result<_, crate::BoxError> = Ok(http_body::Frame::data(Bytes::from(out)));
        Some((frame, (!done).then_some(end + 1)))
    });
    let mut response = http::Response::new(StreamBody::new(frames).boxed());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// Appends row `id` in the given format.
fn row(out: &mut String, id: u64, format: Format, first: bool) {
    use std::fmt::Write;
    const STATUS: [&str; 4] = ["active", "archived", "failed", "pending"];
    let status = STATUS[(id % 4) as usize];
    let created_at = timestamp(1_767_225_600 + 3 * id);
    let user_id = (id * 7919) % 100_000;
    let _ = match format {
        Format::Json => write!(
            out,
            "{}{{\"id\":{id},\"status\":\"{status}\",\"created_at\":\"{created_at}\",\"user_id\":{user_id},\"message\":\"event number {id}\"}}",
            if first { "" } else { "," }
        ),
        Format::Csv => writeln!(
            out,
            "{id},{status},{created_at},{user_id},event number {id}"
        ),
    };
}

/// RFC 3339 UTC timestamp of a Unix time (civil-from-days, H. Hinnant); no date crate needed for
/// one format.
fn timestamp(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The backend's URL as [`DEMO_CONFIG`] writes it (`demo --backend-listen` replaces it).
pub(crate) const DEFAULT_BACKEND: &str = "http://127.0.0.1:8081";

/// The backend's address in [`DEMO_CONFIG`].
pub(crate) fn backend_addr(config: &crate::config::Config) -> Option<SocketAddr> {
    let upstream = config.upstream("demo")?;
    upstream.origin.authority()?.as_str().parse().ok()
}

/// Prints the commands that show each behaviour.
pub(crate) fn instructions(
    proxy: SocketAddr,
    backend: SocketAddr,
    admin: Option<SocketAddr>,
) -> String {
    let admin = admin.map_or_else(String::new, |admin| {
        format!(
            "
  # the admin listener: readiness with each backend's state, metrics, the running config
  curl -s http://{admin}/ready; curl -s http://{admin}/metrics | grep pagegate_requests
"
        )
    });
    format!(
        "\
pagegate demo: a naive list API with {DEFAULT_ROWS} rows on http://{backend}, pagegate in front on http://{proxy}

  # the naive backend, directly: every row in one response (~116 MB)
  curl -s http://{backend}/events | wc -c

  # through pagegate: capped at 100 items, with a signed next-page cursor in the Link header
  curl -i http://{proxy}/events

  # an oversized page is clamped to 1000 (see the pagegate-clamped header)
  curl -s -o /dev/null -D - 'http://{proxy}/events?limit=100000000'

  # a deep offset is refused with application/problem+json pointing at the keyset form
  curl -i 'http://{proxy}/events?offset=500000'

  # bad values never reach the backend
  curl -i 'http://{proxy}/events?limit=1e9'

  # follow the cursor: every page costs the same at any depth
  next=$(curl -s -o /dev/null -D - http://{proxy}/events | sed -n 's/^link: <\\(.*\\)>.*/\\1/Ip' | tr -d '\\r')
  curl -s -o /dev/null -D - \"http://{proxy}$next\"

  # the 1M-row CSV export streams through untouched
  curl -s http://{proxy}/events/export | wc -l

  # one export per client at a time: while a slow one runs, a second gets 429 with
  # Retry-After, RateLimit-Policy and RateLimit (five may start per minute)
  curl -s --limit-rate 5M -o /dev/null http://{proxy}/events/export &
  sleep 0.5; curl -i http://{proxy}/events/export; wait
{admin}
Press Ctrl-C to stop.
"
    )
}

#[cfg(test)]
mod tests;
