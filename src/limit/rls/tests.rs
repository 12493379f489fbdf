//! The service's answers as verdicts and fields; when a streaming answer's cost is sent.

use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::google::protobuf::Duration as PbDuration;

use super::{MAX_VALUE, RateLimitService, RlsError, ServiceCost, bounded, verdict};
use crate::limit::Which;
use crate::limit::config::{QuotaUnit, RlsConfig};

fn answer(code: Code, status: Option<(u32, Unit, u32, i64)>) -> RateLimitResponse {
    RateLimitResponse {
        overall_code: code as i32,
        statuses: status
            .map(|(requests, unit, remaining, reset)| DescriptorStatus {
                code: code as i32,
                current_limit: Some(RateLimit {
                    requests_per_unit: requests,
                    unit: unit as i32,
                    ..Default::default()
                }),
                limit_remaining: remaining,
                duration_until_reset: Some(PbDuration {
                    seconds: reset,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

#[test]
fn an_ok_answer_fills_the_fields_from_its_status() {
    let got = verdict(&answer(Code::Ok, Some((10, Unit::Minute, 7, 42)))).expect("a verdict");
    assert!(got.refused.is_none());
    let fields = got.fields.expect("fields");
    assert_eq!(fields.policy, "\"service\";q=10;w=60");
    assert_eq!(fields.state, "\"service\";r=7;t=42");
}

#[test]
fn an_over_limit_answer_refuses_until_the_reset() {
    let got = verdict(&answer(Code::OverLimit, Some((3, Unit::Hour, 0, 1800)))).expect("a verdict");
    let refused = got.refused.expect("refused");
    assert_eq!(refused.which, Which::Service);
    assert_eq!(refused.retry_after, 1800);
    assert_eq!(refused.rate.requests.get(), 3);
    assert_eq!(refused.rate.per.as_secs(), 3600);
    assert_eq!(got.fields.expect("fields").state, "\"service\";r=0;t=1800");
}

#[test]
fn no_limit_matched_passes_without_fields_and_unknown_is_a_failure() {
    let got = verdict(&answer(Code::Ok, None)).expect("a verdict");
    assert!(got.refused.is_none() && got.fields.is_none());
    // Over the limit with no status to say which: refused, retry in a second.
    let got = verdict(&answer(Code::OverLimit, None)).expect("a verdict");
    let refused = got.refused.expect("refused");
    assert_eq!(refused.retry_after, 1);
    // No rate is made up for the client.
    assert_eq!(refused.which, Which::ServiceUnstated);
    let error = crate::limit::LimitError {
        refusal: crate::limit::Refusal::Rate(refused),
        fields: None,
    };
    assert_eq!(
        error.to_string(),
        "too many requests: the rate-limit service refused this one; retry in 1 s"
    );
    assert!(matches!(
        verdict(&answer(Code::Unknown, None)),
        Err(RlsError::Unknown)
    ));
    // A code this version does not know is no verdict either.
    let mut odd = answer(Code::Ok, None);
    odd.overall_code = 9;
    assert!(matches!(verdict(&odd), Err(RlsError::Unknown)));
}

#[test]
fn a_limit_of_an_unknown_unit_or_zero_requests_shows_no_fields() {
    let got = verdict(&answer(Code::Ok, Some((0, Unit::Second, 0, 1)))).expect("a verdict");
    assert!(got.fields.is_none());
    let got = verdict(&answer(Code::Ok, Some((5, Unit::Unknown, 1, 1)))).expect("a verdict");
    assert!(got.fields.is_none());
}

#[test]
fn long_values_are_sent_as_a_hash_prefix() {
    assert_eq!(bounded("tenant-7".to_owned()), "tenant-7");
    let long = "x".repeat(MAX_VALUE + 1);
    let sent = bounded(long.clone());
    assert!(
        sent.starts_with("sha256:") && sent.len() == 7 + 32,
        "{sent}"
    );
    assert_eq!(sent, bounded(long), "the same value, the same entry");
    assert_ne!(sent, bounded("y".repeat(MAX_VALUE + 1)));
}

#[tokio::test(start_paused = true)]
async fn a_streaming_answer_sends_what_it_owes_once_every_interval() {
    let rls = RateLimitService::new(RlsConfig {
        address: "http://127.0.0.1:9".to_owned(),
        tls: None,
        domain: "d".to_owned(),
        timeout: std::time::Duration::from_millis(20),
    })
    .expect("a lazy client");
    let second = std::time::Duration::from_secs(1);
    let cost = ServiceCost::new(rls, vec![Vec::new()], QuotaUnit::Bytes, second);
    cost.add(100);
    assert_eq!(cost.charged(), 0, "not due before a second");
    tokio::time::advance(second).await;
    cost.add(50);
    assert_eq!(cost.charged(), 150, "due: all sent so far");
    cost.settle();
    cost.add(10);
    tokio::time::advance(second - std::time::Duration::from_millis(1)).await;
    cost.add(1);
    assert_eq!(cost.charged(), 150, "the next one a second after the last");
    tokio::time::advance(std::time::Duration::from_millis(1)).await;
    cost.add(1);
    assert_eq!((cost.sent(), cost.charged()), (162, 162));
    // While that charge is on its way, the next due one waits; then all that is owed goes.
    tokio::time::advance(second).await;
    cost.add(5);
    assert_eq!(cost.charged(), 162, "one charge on its way at a time");
    cost.settle();
    tokio::time::advance(second).await;
    cost.add(5);
    assert_eq!((cost.sent(), cost.charged()), (172, 172));
}

#[test]
fn repeated_headers_are_read_each_way_a_backend_reads_them() {
    use crate::limit::config::{DescriptorEntry, DescriptorValue};
    let header = |key: &str, name: &'static str| DescriptorEntry {
        key: key.to_owned(),
        value: DescriptorValue::Header(http::HeaderName::from_static(name)),
    };
    let config = [
        header("tenant", "x-tenant"),
        header("user", "x-user"),
        DescriptorEntry {
            key: "plan".to_owned(),
            value: DescriptorValue::Literal("free".to_owned()),
        },
    ];
    let key = crate::limit::ClientKey(1, 1, 0);
    let values = |descriptors: &super::Descriptors| -> Vec<Vec<String>> {
        descriptors
            .iter()
            .map(|d| d.iter().map(|e| format!("{}={}", e.key, e.value)).collect())
            .collect()
    };
    let mut headers = http::HeaderMap::new();
    headers.append("x-tenant", "a".parse().expect("value"));
    headers.append("x-user", "c".parse().expect("value"));
    let once = super::entries(&config, ("r", &key), &headers, None);
    assert_eq!(values(&once), [["tenant=a", "user=c", "plan=free"]]);
    headers.append("x-tenant", "b".parse().expect("value"));
    headers.append("x-user", "d".parse().expect("value"));
    let twice = super::entries(&config, ("r", &key), &headers, None);
    assert_eq!(
        values(&twice),
        [
            ["tenant=a", "user=c", "plan=free"],
            ["tenant=b", "user=d", "plan=free"],
            ["tenant=a, b", "user=c, d", "plan=free"],
        ]
    );
    // Empty is absent; a value that is not text still counts, apart from any text value.
    let mut odd = http::HeaderMap::new();
    odd.append("x-tenant", http::HeaderValue::from_static(""));
    odd.append(
        "x-user",
        http::HeaderValue::from_bytes(b"\xe9t\xe9").expect("value"),
    );
    odd.append("x-user", "victim".parse().expect("value"));
    let read = values(&super::entries(&config, ("r", &key), &odd, None));
    assert_eq!(read.len(), 3, "{read:?}");
    assert_eq!(read[0], ["user=\u{fffd}t\u{fffd}", "plan=free"]);
    assert_eq!(read[1], ["user=victim", "plan=free"]);
}
