//! An Envoy rate-limit service (`envoy.service.ratelimit.v3.RateLimitService`) over the
//! `limitador` crate's in-memory limiter: each request's descriptors become the CEL list
//! `descriptors` (`descriptors[0].client`, as Limitador's own server binds them), its domain
//! the namespace, its `hits_addend` (1 when unset) the delta. Every hit is counted, refused or
//! not, as envoyproxy/ratelimit (the API's reference service) counts them: a cost sent after
//! an answer ended (`cost.response`) counts even when it goes over the limit, so the client's
//! next request is refused. (Limitador's own server counts only hits within the limit.) Shared
//! by the example binary and the integration tests.

use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use limitador::RateLimiter;
use limitador::limit::{Context, Limit, Namespace};
use tokio::net::TcpListener;

/// The service: one in-memory limiter, its limits read once.
pub(crate) struct Service {
    limiter: Arc<RateLimiter>,
}

impl Service {
    /// A service enforcing `limits` (Limitador's limits format, as JSON).
    pub(crate) fn new(limits: &str) -> Result<Self, String> {
        let limits: Vec<Limit> =
            serde_json::from_str(limits).map_err(|e| format!("limits: {e}"))?;
        let limiter = RateLimiter::new(10_000);
        limiter
            .configure_with(limits)
            .map_err(|e| format!("limits: {e}"))?;
        Ok(Self {
            limiter: Arc::new(limiter),
        })
    }

    /// Serves gRPC on `listener` until `shutdown` completes (its connections are then
    /// closed).
    pub(crate) async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), String> {
        // Small answers go out at once (no Nagle delay behind the client's delayed ACK).
        let incoming = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            |stream| stream.and_then(|s| s.set_nodelay(true).map(|()| s)),
        );
        self.serve_incoming(incoming, shutdown).await
    }

    /// Serves gRPC on the connections of `incoming` (TLS ones, say) until `shutdown`.
    pub(crate) async fn serve_incoming<IO>(
        self,
        incoming: impl tokio_stream::Stream<Item = std::io::Result<IO>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), String>
    where
        IO: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + tonic::transport::server::Connected
            + Unpin
            + Send
            + 'static,
    {
        // One service: no router needed (tonic's router pulls in axum).
        tonic::transport::Server::builder()
            .serve_with_incoming_shutdown(RateLimitServiceServer::new(self), incoming, shutdown)
            .await
            .map_err(|e| e.to_string())
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let request = request.into_inner();
        let namespace = Namespace::from(request.domain.as_str());
        let hits = u64::from(request.hits_addend.max(1));
        let descriptors: Vec<HashMap<String, String>> = request
            .descriptors
            .iter()
            .map(|d| {
                d.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone()))
                    .collect()
            })
            .collect();
        let mut ctx = Context::default();
        ctx.list_binding("descriptors".to_owned(), descriptors);
        let mut result = self
            .limiter
            .check_rate_limited_and_update(&namespace, &ctx, hits, true)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        // Counted even when over, as envoyproxy/ratelimit counts (Limitador's check leaves a
        // refused hit out). Two steps, not one: another call may slip between them, which an
        // example can live with; the fields below are from before this update.
        if result.limited {
            self.limiter
                .update_counters(&namespace, &ctx, hits)
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
        }
        let code = if result.limited {
            Code::OverLimit
        } else {
            Code::Ok
        };
        // The tightest counter describes the answer (fewest requests left).
        result
            .counters
            .sort_by_key(|c| c.remaining().unwrap_or(c.max_value()));
        let statuses = result
            .counters
            .first()
            .map(|counter| DescriptorStatus {
                code: code as i32,
                current_limit: Some(RateLimit {
                    requests_per_unit: u32::try_from(counter.max_value()).unwrap_or(u32::MAX),
                    unit: unit(counter.window().as_secs()) as i32,
                    ..Default::default()
                }),
                limit_remaining: counter
                    .remaining()
                    .map_or(0, |r| u32::try_from(r).unwrap_or(u32::MAX)),
                duration_until_reset: counter.expires_in().map(|d| PbDuration {
                    seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
                }),
                ..Default::default()
            })
            .into_iter()
            .collect();
        Ok(tonic::Response::new(RateLimitResponse {
            overall_code: code as i32,
            statuses,
            ..Default::default()
        }))
    }
}

/// The unit a window of `secs` is (Envoy's API has units only).
fn unit(secs: u64) -> Unit {
    match secs {
        1 => Unit::Second,
        60 => Unit::Minute,
        3600 => Unit::Hour,
        86_400 => Unit::Day,
        604_800 => Unit::Week,
        _ => Unit::Unknown,
    }
}
