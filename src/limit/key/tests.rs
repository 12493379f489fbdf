use std::net::SocketAddr;

use super::*;

fn client(ip: &str) -> ClientAddr {
    let addr: SocketAddr = format!("{ip}:5000").parse().expect("addr");
    ClientAddr::new(addr, &crate::client_addr::TrustedProxies::default())
}

#[test]
fn a_header_key_falls_back_to_the_address_and_is_never_stored_in_clear() {
    let name = http::HeaderName::from_static("x-api-key");
    let source = ClientKeySource::Header(name.clone());
    let mut headers = http::HeaderMap::new();
    let a = client("192.0.2.1");
    let b = client("192.0.2.2");
    // Without the header: the address decides.
    assert_eq!(
        ClientKey::of(&source, &headers, Some(&a), None),
        ClientKey::of(&ClientKeySource::Client, &headers, Some(&a), None)
    );
    assert_ne!(
        ClientKey::of(&source, &headers, Some(&a), None),
        ClientKey::of(&source, &headers, Some(&b), None)
    );
    // With it: the same key from any address, and not the header's bytes.
    headers.insert(&name, http::HeaderValue::from_static("secret-key-1"));
    let keyed = ClientKey::of(&source, &headers, Some(&a), None);
    assert_eq!(keyed, ClientKey::of(&source, &headers, Some(&b), None));
    assert!(!keyed.short().to_string().contains(&hex("secret-key-1")));
    // Repeated: ambiguous, so the address decides.
    headers.append(&name, http::HeaderValue::from_static("secret-key-2"));
    assert_eq!(
        ClientKey::of(&source, &headers, Some(&a), None),
        ClientKey::of(&ClientKeySource::Client, &headers, Some(&a), None)
    );
}

#[test]
fn header_and_client_tells_one_key_from_two_addresses_apart() {
    let name = http::HeaderName::from_static("x-tenant");
    let source = ClientKeySource::HeaderAndClient(name.clone());
    let mut headers = http::HeaderMap::new();
    headers.insert(&name, http::HeaderValue::from_static("acme"));
    let a = ClientKey::of(&source, &headers, Some(&client("192.0.2.1")), None);
    let b = ClientKey::of(&source, &headers, Some(&client("192.0.2.2")), None);
    assert_ne!(a, b);
    // IPv6 clients are grouped by /64.
    let c = ClientKey::of(&source, &headers, Some(&client("[2001:db8::1]")), None);
    let d = ClientKey::of(&source, &headers, Some(&client("[2001:db8::ffff]")), None);
    assert_eq!(c, d);
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}
