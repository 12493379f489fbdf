//! The optional `/metrics` listener (`metrics_listen`): Prometheus text, off the data path.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::listener::accept;
use crate::telemetry::Metrics;

/// Answers `GET /metrics` on `listener` until the task is dropped; any other path is 404.
pub(super) async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (stream, _) = accept(&listener, "metrics").await;
        let metrics = Arc::clone(&metrics);
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let metrics = Arc::clone(&metrics);
            async move {
                let mut response = if req.uri().path() == "/metrics" {
                    http::Response::new(crate::body::full(metrics.encode()))
                } else {
                    let mut r = http::Response::new(crate::body::full("not found\n"));
                    *r.status_mut() = http::StatusCode::NOT_FOUND;
                    r
                };
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
