use http::HeaderMap;

use super::request_id::new_request_id;
use super::*;

#[test]
fn request_ids_are_kept_when_sane_and_replaced_otherwise() {
    let mut headers = HeaderMap::new();
    headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
    assert_eq!(request_id(&mut headers, true), "abc-123");
    let untrusted = request_id(&mut headers, false);
    assert_ne!(untrusted, "abc-123", "kept only from a trusted proxy");
    assert_eq!(headers[REQUEST_ID], untrusted);
    for bad in ["", "has space", "a\"b", "a/b", "<script>", &"x".repeat(129)] {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_str(bad).expect("header"));
        let id = request_id(&mut headers, true);
        assert_eq!(id.len(), 32, "{bad:?} is replaced");
        assert_eq!(headers[REQUEST_ID], id, "and the replacement is forwarded");
    }
    let mut twice = HeaderMap::new();
    twice.append(REQUEST_ID, HeaderValue::from_static("a"));
    twice.append(REQUEST_ID, HeaderValue::from_static("b"));
    let id = request_id(&mut twice, true);
    assert_eq!(twice.get_all(REQUEST_ID).iter().count(), 1);
    assert_eq!(twice[REQUEST_ID], id);
}

#[test]
fn generated_ids_are_distinct_hex() {
    let a = new_request_id();
    let b = new_request_id();
    assert_ne!(a, b);
    assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
    assert_eq!(
        a.as_bytes()[..16],
        b.as_bytes()[..16],
        "one prefix per process"
    );
}
