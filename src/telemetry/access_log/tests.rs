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

#[test]
fn a_body_error_is_held_for_one_poll_so_the_server_flushes_first() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    use bytes::Bytes;
    use http_body::{Body as _, Frame};
    use http_body_util::BodyExt as _;

    struct Wakes(AtomicUsize);
    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let frames = futures_util::stream::iter([
        Ok(Frame::data(Bytes::from_static(b"abc"))),
        Err(crate::BoxError::from("the backend reset")),
    ]);
    let body = http_body_util::StreamBody::new(frames).boxed();
    let mut logged = std::pin::pin!(LoggedBody::new(body, None, None, None));
    let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    let Poll::Ready(Some(Ok(frame))) = logged.as_mut().poll_frame(&mut cx) else {
        panic!("the data first");
    };
    assert_eq!(frame.into_data().ok().as_deref(), Some(&b"abc"[..]));
    // The error: first a poll that lets the server flush, waking the body at once.
    assert!(logged.as_mut().poll_frame(&mut cx).is_pending());
    assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
    let Poll::Ready(Some(Err(error))) = logged.as_mut().poll_frame(&mut cx) else {
        panic!("then the error");
    };
    assert_eq!(error.to_string(), "the backend reset");
}

#[test]
fn long_paths_are_cut_for_logs_at_a_character() {
    assert_eq!(crate::telemetry::logged_path("/events"), "/events");
    let long = format!("/{}", "é".repeat(1000));
    let cut = crate::telemetry::logged_path(&long);
    assert!(cut.len() <= 1024 + '…'.len_utf8(), "{}", cut.len());
    assert!(cut.ends_with('…') && long.starts_with(cut.trim_end_matches('…')));
    // Never inside an escape.
    let escaped = format!("/{}%41%42", "a".repeat(1021));
    assert_eq!(
        crate::telemetry::logged_path(&escaped),
        format!("/{}…", "a".repeat(1021))
    );
}
