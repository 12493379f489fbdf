use super::*;
use crate::client_addr::ClientAddr;
use crate::upstream::config::HostMode;

#[test]
fn redirects_to_the_upstream_become_paths_on_pagegate() {
    let prefix = "http://10.0.0.2:8000/api";
    for (location, expected) in [
        ("http://10.0.0.2:8000/api/events/", "/events/"),
        ("HTTP://10.0.0.2:8000/API/events?x=1", "/events?x=1"),
        ("http://10.0.0.2:8000/api", "/"),
        ("http://10.0.0.2:8000/api?x=1", "/?x=1"),
        (
            "http://10.0.0.2:8000/apix/events",
            "http://10.0.0.2:8000/apix/events",
        ),
        (
            "http://10.0.0.2:80001/api/events",
            "http://10.0.0.2:80001/api/events",
        ),
        ("http://10.0.0.2:8000/other", "http://10.0.0.2:8000/other"),
        (
            "https://elsewhere.example/api/events",
            "https://elsewhere.example/api/events",
        ),
        ("/events/", "/events/"),
        (
            "http://10.0.0.2:8000/api//evil.example/x",
            "/evil.example/x",
        ),
        (
            "http://10.0.0.2:8000/api/\\evil.example/x",
            "/evil.example/x",
        ),
        // Browsers delete the tab: `/\t/evil.example` would be `//evil.example`.
        (
            "http://10.0.0.2:8000/api/\t/evil.example/x",
            "/evil.example/x",
        ),
        (
            "http://10.0.0.2:8000/api/\t\\\t/evil.example",
            "/evil.example",
        ),
    ] {
        let mut h = HeaderMap::new();
        h.insert(
            header::LOCATION,
            HeaderValue::from_str(location).expect("value"),
        );
        h.insert(
            header::CONTENT_LOCATION,
            HeaderValue::from_str(location).expect("value"),
        );
        rewrite_redirects(&mut h, prefix);
        assert_eq!(h[header::LOCATION], expected, "{location}");
        assert_eq!(h[header::CONTENT_LOCATION], expected, "{location}");
    }
}

#[test]
fn connection_named_headers_are_removed() {
    let mut h = HeaderMap::new();
    h.insert("connection", HeaderValue::from_static("close, x-secret"));
    h.insert("x-secret", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    h.insert("x-kept", HeaderValue::from_static("1"));
    remove_hop_by_hop(&mut h, &[]);
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h.contains_key("x-kept"));
}

#[test]
fn connection_cannot_remove_what_pagegate_decided_by() {
    let mut h = HeaderMap::new();
    let named = "content-type, Content-Length, host, x-request-id, x-gone";
    h.insert("connection", HeaderValue::from_str(named).expect("value"));
    for name in [
        "content-type",
        "content-length",
        "host",
        "x-request-id",
        "x-gone",
    ] {
        h.insert(name, HeaderValue::from_static("1"));
    }
    remove_hop_by_hop(&mut h, &[]);
    let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(
        left,
        ["content-length", "content-type", "host", "x-request-id"]
    );
}

#[test]
fn underscored_spellings_of_controlled_headers_are_removed() {
    let mut h = HeaderMap::new();
    for name in [
        "x_http_method_override",
        "x-http_method-override",
        "x_method_override",
        "x_forwarded_for",
        "x_real_ip",
        "content_type",
        "transfer_encoding",
        "x_request_id",
        "x-http-method",
        "api_key",
        "x_custom",
    ] {
        h.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_static("GET"),
        );
    }
    remove_method_overrides(&mut h, &[]);
    let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["api_key", "x_custom"], "other names with `_` pass");
}

#[test]
fn trusted_forwarding_appends_and_keeps_front_values() {
    let mut h = HeaderMap::new();
    h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
    h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
    h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    let host = HeaderValue::from_static("api.example.com");
    let client = ClientAddr::new(
        "[::1]:5000".parse().expect("addr"),
        &crate::client_addr::TrustedProxies::default(),
    );
    set_forwarding(
        &mut h,
        Some(&client),
        Some(&host),
        &HostMode::Upstream,
        Some(&HeaderValue::from_static("10.0.0.2:8000")),
        (true, &[]),
    );
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.51.100.7, ::1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "api.example.com");
    assert_eq!(
        h["forwarded"],
        "for=\"[::1]\";proto=https;host=\"api.example.com\""
    );
    assert_eq!(h["host"], "10.0.0.2:8000");
    set_forwarding(
        &mut h,
        None,
        Some(&host),
        &HostMode::Preserve,
        Some(&HeaderValue::from_static("10.0.0.2:8000")),
        (true, &[]),
    );
    assert_eq!(h["host"], "api.example.com");
}

#[test]
fn untrusted_forwarding_headers_from_clients_are_replaced() {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
    h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
    h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    h.insert("forwarded", HeaderValue::from_static("for=10.0.0.1"));
    for claim in [
        "x-real-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "true-client-ip",
    ] {
        h.insert(claim, HeaderValue::from_static("6.6.6.6"));
    }
    h.insert("x-forwarded-ssl", HeaderValue::from_static("on"));
    let host = HeaderValue::from_static("api.example.com");
    let client = ClientAddr::new(
        "192.0.2.4:5000".parse().expect("addr"),
        &crate::client_addr::TrustedProxies::default(),
    );
    set_forwarding(
        &mut h,
        Some(&client),
        Some(&host),
        &HostMode::Upstream,
        Some(&HeaderValue::from_static("app:80")),
        (false, &[]),
    );
    assert_eq!(h["x-forwarded-for"], "192.0.2.4");
    assert_eq!(h["x-forwarded-host"], "api.example.com");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(
        h["forwarded"],
        "for=192.0.2.4;proto=http;host=\"api.example.com\""
    );
    for claim in [
        "x-real-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "true-client-ip",
        "x-forwarded-ssl",
    ] {
        assert!(!h.contains_key(claim), "{claim} was kept");
    }
}

#[test]
fn connection_cannot_remove_what_pagegate_sets() {
    let mut h = HeaderMap::new();
    h.insert(
        "connection",
        "accept-encoding, traceparent, x-hop".parse().unwrap(),
    );
    h.insert("accept-encoding", "identity".parse().unwrap());
    h.insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            .parse()
            .unwrap(),
    );
    h.insert("x-hop", "1".parse().unwrap());
    remove_hop_by_hop(&mut h, &[]);
    assert_eq!(h["accept-encoding"], "identity");
    assert!(h.contains_key("traceparent"));
    assert!(!h.contains_key("x-hop") && !h.contains_key("connection"));
}

#[test]
fn responses_keep_their_trailer_declaration() {
    let mut h = HeaderMap::new();
    h.insert("trailer", "x-checksum".parse().unwrap());
    h.insert("transfer-encoding", "chunked".parse().unwrap());
    h.insert("content-length", "5".parse().unwrap());
    h.insert("keep-alive", "timeout=5".parse().unwrap());
    clean_response(&mut h);
    assert_eq!(h["trailer"], "x-checksum");
    assert!(!h.contains_key("transfer-encoding") && !h.contains_key("content-length"));
    assert!(!h.contains_key("keep-alive"));
}

#[test]
fn a_host_cannot_break_out_of_forwarded_quotes() {
    let client = ClientAddr::new(
        "192.0.2.4:5000".parse().expect("addr"),
        &crate::client_addr::TrustedProxies::default(),
    );
    for (host, element) in [
        (
            "a\"b\\c;for=1.2.3.4",
            "for=192.0.2.4;proto=http;host=\"abc;for=1.2.3.4\"",
        ),
        (
            "plain.example:8080",
            "for=192.0.2.4;proto=http;host=\"plain.example:8080\"",
        ),
    ] {
        let mut h = HeaderMap::new();
        let host = HeaderValue::from_str(host).expect("host");
        set_forwarding(
            &mut h,
            Some(&client),
            Some(&host),
            &HostMode::Upstream,
            None,
            (false, &[]),
        );
        assert_eq!(h["forwarded"], element);
    }
}

#[test]
fn every_format_of_a_clients_trace_context_is_removed_but_what_limits_read() {
    let mut h = HeaderMap::new();
    for name in [
        "traceparent",
        "tracestate",
        "b3",
        "x-b3-traceid",
        "x-b3-sampled",
        "x_b3_flags",
        "uber-trace-id",
        "jaeger-debug-id",
        "ot-tracer-sampled",
        "x-datadog-sampling-priority",
        "x-amzn-trace-id",
        "x-cloud-trace-context",
        "sw8",
        "elastic-apm-traceparent",
        "newrelic",
        "x-instana-l",
        "sentry-trace",
        "grpc-trace-bin",
        "x-dynatrace",
        "singularityheader",
        "baggage",
        "uberctx-user",
        "x-b3",
        "accept",
    ] {
        h.insert(HeaderName::from_static(name), HeaderValue::from_static("1"));
    }
    let decided = [HeaderName::from_static("x-datadog-sampling-priority")];
    remove_trace_context(&mut h, &decided, false);
    let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    // Without `w3c` the W3C pair is pagegate's own span's, and stays.
    let kept = [
        "accept",
        "baggage",
        "traceparent",
        "tracestate",
        "uberctx-user",
        "x-b3",
        "x-datadog-sampling-priority",
    ];
    assert_eq!(left, kept);
    remove_trace_context(&mut h, &[], true);
    let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["accept", "baggage", "uberctx-user", "x-b3"]);
}
