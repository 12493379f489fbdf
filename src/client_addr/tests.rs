use super::*;

fn trusted() -> TrustedProxies {
    TrustedProxies::new(vec![
        "10.0.0.0/8".parse().expect("net"),
        "fd00::/8".parse().expect("net"),
    ])
}

fn resolved(peer: &str, xff: &[&str]) -> ClientAddr {
    let mut headers = HeaderMap::new();
    for value in xff {
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_str(value).expect("value"),
        );
    }
    let mut client = ClientAddr::new(peer.parse().expect("peer"), &trusted());
    client.resolve(&headers, &trusted());
    client
}

#[test]
fn the_client_is_the_right_most_untrusted_hop_behind_a_trusted_peer() {
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    // A spoofed left-most entry does not change the client.
    assert_eq!(
        resolved("10.0.0.2:1", &["6.6.6.6, 203.0.113.9"]).ip(),
        ip("203.0.113.9")
    );
    assert_eq!(
        resolved("10.0.0.2:1", &["6.6.6.6", "203.0.113.9, 10.1.1.1"]).ip(),
        ip("203.0.113.9")
    );
    // Every hop trusted: the left-most.
    assert_eq!(
        resolved("10.0.0.2:1", &["10.9.9.9, 10.1.1.1"]).ip(),
        ip("10.9.9.9")
    );
    // Garbage ends the search; the hop right of it stands.
    assert_eq!(
        resolved("10.0.0.2:1", &["203.0.113.9, junk, 10.1.1.1"]).ip(),
        ip("10.1.1.1")
    );
    // Port forms, as some proxies write them.
    assert_eq!(
        resolved("10.0.0.2:1", &["203.0.113.9:4711"]).ip(),
        ip("203.0.113.9")
    );
    assert_eq!(
        resolved("10.0.0.2:1", &["[2001:db8::7]:4711"]).ip(),
        ip("2001:db8::7")
    );
    // No header: the peer.
    assert_eq!(resolved("10.0.0.2:1", &[]).ip(), ip("10.0.0.2"));
    // An untrusted peer's header is ignored.
    let direct = resolved("198.51.100.7:1", &["1.2.3.4"]);
    assert_eq!(direct.ip(), ip("198.51.100.7"));
    assert!(!direct.trusted());
    // IPv4-mapped peers count as IPv4.
    assert!(resolved("[::ffff:10.0.0.2]:1", &[]).trusted());
}

#[test]
fn ipv6_clients_are_grouped_by_64() {
    let a = resolved("[2001:db8:1:2:aaaa::1]:1", &[]);
    let b = resolved("[2001:db8:1:2:bbbb::2]:1", &[]);
    let c = resolved("[2001:db8:1:3::1]:1", &[]);
    assert_eq!(a.key(), b.key());
    assert_ne!(a.key(), c.key());
    assert_eq!(
        resolved("192.0.2.1:1", &[]).key(),
        "192.0.2.1".parse::<IpAddr>().expect("ip")
    );
}
