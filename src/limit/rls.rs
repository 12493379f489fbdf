//! `store: envoy_rls`: request rates decided by a rate-limit service that speaks Envoy's v3
//! API (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`): envoyproxy/ratelimit,
//! Limitador and their kin, which teams on Envoy, Istio, Contour or Kuadrant already run. A
//! route sends one descriptor a request (its `descriptors`: the route's name and the client's
//! key by default), with `hits_addend` its `cost.request` (1 by default); the answer's status
//! fills `RateLimit-Policy`, `RateLimit` and `Retry-After`. Each call is bounded by
//! `rate_limit_service.timeout`; an error, a timeout or an `UNKNOWN` answer follows the
//! route's `on_store_error`. An `https://` service is reached through the upstreams' TLS
//! connector.
//!
//! A route's `cost` sets the request's `hits_addend`, and may send what its answer streams
//! (rows or bytes) every `cost.every` while it streams and the rest when it ends
//! ([`ServiceCost`]).
//!
//! The service keeps no leases, so concurrency stays in this process; rows and bytes quotas
//! and pacing too.

use std::num::NonZeroU32;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use http::HeaderMap;
use tonic::transport::{Channel, Endpoint};

use super::ClientKey;
use super::config::{DescriptorEntry, DescriptorValue, Rate, RlsConfig};
use super::health::Health;
use super::rate::{Fields, Refused, Which};

/// Why the service gave no verdict.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RlsError {
    /// No answer within `rate_limit_service.timeout`.
    #[error("the rate-limit service did not answer within {0:?}")]
    Timeout(Duration),
    /// A gRPC error (unreachable, refused, a bad answer).
    #[error("the rate-limit service: {0}")]
    Status(#[from] tonic::Status),
    /// It answered `UNKNOWN` (as Envoy does, taken as a failure).
    #[error("the rate-limit service answered UNKNOWN")]
    Unknown,
}

/// The rate-limit service every `store: envoy_rls` route of a generation asks.
#[derive(Clone)]
pub(crate) struct RateLimitService {
    config: RlsConfig,
    client: RateLimitServiceClient<Channel>,
    /// The service is failing: logged once when it starts and once when it ends.
    health: std::sync::Arc<Health>,
    /// Answers' costs are being lost (logged as the service's health is, apart from it).
    charges: std::sync::Arc<Health>,
}

impl std::fmt::Debug for RateLimitService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the service said of one request: refused or not, and the fields of its answer.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub(crate) refused: Option<Refused>,
    pub(crate) fields: Option<Fields>,
}

impl RateLimitService {
    /// A lazily connecting client (needs a Tokio runtime); `Err` says why it cannot be.
    pub(crate) fn new(config: RlsConfig) -> Result<Self, String> {
        let connect = config.timeout.max(Duration::from_millis(250));
        let endpoint = Endpoint::from_shared(config.address.clone())
            .map_err(|e| e.to_string())?
            .connect_timeout(connect)
            .tcp_nodelay(true);
        let channel = match &config.tls {
            None => endpoint.connect_lazy(),
            // TLS by the upstreams' own connector (rustls with the binary's one provider,
            // ALPN h2), not tonic's TLS features, which bring their own.
            Some(tls) => {
                let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
                tcp.set_nodelay(true);
                tcp.set_connect_timeout(Some(connect));
                endpoint.connect_with_connector_lazy(crate::upstream::https(tcp, Some(tls), true)?)
            }
        };
        Ok(Self {
            client: RateLimitServiceClient::new(channel),
            config,
            health: std::sync::Arc::default(),
            charges: std::sync::Arc::default(),
        })
    }

    /// The settings it was built from.
    pub(crate) fn config(&self) -> &RlsConfig {
        &self.config
    }

    /// Asks whether one more request of `entries` may go (`hits` of it).
    pub(crate) async fn ask(&self, entries: Descriptors, hits: u32) -> Result<Verdict, RlsError> {
        let answer = self.call(entries, hits, self.config.timeout).await;
        self.health(&answer);
        verdict(&answer?)
    }

    /// Asks the service about `entries` (`hits` of them), within `timeout` per call.
    /// One call per descriptor (usually one): a service that reads only a request's first
    /// descriptor (Limitador's `descriptors[0]`) still checks each. The answer is the first
    /// over the limit, else the first.
    async fn call(
        &self,
        entries: Descriptors,
        hits: u32,
        timeout: Duration,
    ) -> Result<RateLimitResponse, RlsError> {
        let calls = entries
            .into_iter()
            .map(|entries| self.call_one(entries, hits, timeout));
        let answers = futures_util::future::try_join_all(calls).await?;
        // An answer that is neither OK nor OVER_LIMIT is a failure of the whole ask.
        if let Some(odd) = answers
            .iter()
            .find(|a| a.overall_code != Code::Ok as i32 && a.overall_code != Code::OverLimit as i32)
        {
            return Ok(odd.clone());
        }
        let over = answers
            .iter()
            .position(|a| a.overall_code == Code::OverLimit as i32);
        Ok(answers
            .into_iter()
            .nth(over.unwrap_or(0))
            .unwrap_or_default())
    }

    /// One `ShouldRateLimit` of `hits` for one descriptor, within `timeout`.
    async fn call_one(
        &self,
        entries: Vec<Entry>,
        hits: u32,
        timeout: Duration,
    ) -> Result<RateLimitResponse, RlsError> {
        let request = RateLimitRequest {
            domain: self.config.domain.clone(),
            descriptors: vec![RateLimitDescriptor {
                entries,
                ..Default::default()
            }],
            hits_addend: hits,
        };
        let mut client = self.client.clone();
        tokio::time::timeout(timeout, client.should_rate_limit(request))
            .await
            .map_err(|_| RlsError::Timeout(timeout))
            .and_then(|answer| Ok(answer?.into_inner()))
    }

    /// Notes the service's health: the first failure and the recovery are logged, once each.
    fn health<T>(&self, answer: &Result<T, RlsError>) {
        if !self.health.changed(answer.is_err()) {
            return;
        }
        match answer {
            Ok(_) => {
                tracing::info!("the rate-limit service answers again");
            }
            Err(error) => {
                tracing::warn!(%error, "the rate-limit service cannot answer; on_store_error applies until it does");
            }
        }
    }
}

/// Longest descriptor value sent as it is; a longer one (a client's header) is sent as its
/// SHA-256 prefix, so a client cannot fill the service's counters with megabytes of keys.
const MAX_VALUE: usize = 128;

/// The descriptors one request is charged as: lists of entries.
pub(crate) type Descriptors = Vec<Vec<Entry>>;

/// The descriptors of a request: an entry whose header is absent (or empty) or whose claim
/// the token lacks is left out (Envoy's `skip_if_absent: true`). Headers sent more than once
/// are read as backends read them, each way for all headers at once: every first value, every
/// last value, every header's values joined with `, ` (Node, Rack). Each distinct reading is
/// a descriptor (three at most), so repeating a header escapes no limit, whichever way the
/// backend reads it.
pub(crate) fn entries(
    descriptors: &[DescriptorEntry],
    (route, key): (&str, &ClientKey),
    headers: &HeaderMap,
    verified: Option<&crate::identity::Verified>,
) -> Descriptors {
    let readings: Vec<(&String, [String; 3])> = descriptors
        .iter()
        .filter_map(|d| {
            let one = |value: String| Some([value.clone(), value.clone(), value]);
            let readings = match &d.value {
                DescriptorValue::Route => one(route.to_owned()),
                DescriptorValue::Key => one(key.short().to_string()),
                DescriptorValue::Claim(claim) => one(verified?.claim(claim)?.into_owned()),
                DescriptorValue::Header(name) => header_readings(headers, name),
                DescriptorValue::Literal(text) => one(text.clone()),
            }?;
            Some((&d.key, readings.map(bounded)))
        })
        .collect();
    let mut all: Descriptors = Vec::with_capacity(1);
    for way in 0..3 {
        let descriptor: Vec<Entry> = readings
            .iter()
            .map(|(key, values)| Entry {
                key: (*key).clone(),
                value: values[way].clone(),
            })
            .collect();
        if !all.contains(&descriptor) {
            all.push(descriptor);
        }
    }
    all
}

/// How backends read header `name`: its first value, its last, and all joined with `, `
/// (the same three when it is sent once). None when absent or empty. A value that is not
/// text is read lossily, so it still counts as itself, apart from any text value.
fn header_readings(headers: &HeaderMap, name: &http::HeaderName) -> Option<[String; 3]> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .collect();
    let (first, last) = (values.first()?.clone(), values.last()?.clone());
    let joined = values.join(", ");
    (!joined.is_empty()).then_some([first, last, joined])
}

/// `value`, or its SHA-256 prefix when it is longer than [`MAX_VALUE`].
fn bounded(value: String) -> String {
    use sha2::Digest;
    if value.len() <= MAX_VALUE {
        return value;
    }
    let digest = sha2::Sha256::digest(value.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The service's answer as a verdict: its first status with a limit names the quota.
fn verdict(answer: &RateLimitResponse) -> Result<Verdict, RlsError> {
    let over = match Code::try_from(answer.overall_code) {
        Ok(Code::Ok) => false,
        Ok(Code::OverLimit) => true,
        Ok(Code::Unknown) | Err(_) => return Err(RlsError::Unknown),
    };
    let status = answer
        .statuses
        .iter()
        .find(|s| s.current_limit.is_some() && (!over || s.code == Code::OverLimit as i32));
    let Some((rate, status)) = status.and_then(|s| Some((rate_of(s)?, s))) else {
        // No limit matched the descriptor: nothing to show (and, over, nothing to say why).
        let refused = over.then_some(Refused {
            which: Which::ServiceUnstated,
            rate: Rate {
                requests: NonZeroU32::MIN,
                per: Duration::from_secs(1),
                burst: NonZeroU32::MIN,
            },
            retry_after: 1,
        });
        return Ok(Verdict {
            refused,
            fields: None,
        });
    };
    let reset = status.duration_until_reset.as_ref().map_or(rate.per, |d| {
        Duration::new(
            u64::try_from(d.seconds).unwrap_or(0),
            u32::try_from(d.nanos).unwrap_or(0),
        )
    });
    let reset = super::rate::ceil_secs(reset);
    let remaining = if over { 0 } else { status.limit_remaining };
    let policy = format!("\"service\";q={};w={}", rate.requests, rate.per.as_secs());
    let state = format!("\"service\";r={remaining};t={reset}");
    Ok(Verdict {
        refused: over.then_some(Refused {
            which: Which::Service,
            rate,
            retry_after: reset.max(1),
        }),
        fields: Some(super::rate::fields(&policy, &state)),
    })
}

/// A status's limit as a rate (a unit of a month counts 30 days, a year 365).
fn rate_of(status: &DescriptorStatus) -> Option<Rate> {
    let limit = status.current_limit.as_ref()?;
    let requests = NonZeroU32::new(limit.requests_per_unit)?;
    let secs = match Unit::try_from(limit.unit).ok()? {
        Unit::Second => 1,
        Unit::Minute => 60,
        Unit::Hour => 3600,
        Unit::Day => 86_400,
        Unit::Week => 604_800,
        Unit::Month => 30 * 86_400,
        Unit::Year => 365 * 86_400,
        Unit::Unknown => return None,
    };
    Some(Rate {
        requests,
        per: Duration::from_secs(secs),
        burst: requests,
    })
}

mod cost;

pub(crate) use cost::ServiceCost;

#[cfg(test)]
mod tests;
