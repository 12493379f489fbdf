use bytes::Bytes;

use super::*;

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request {
    let mut builder = http::Request::builder().method(method).uri(target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(crate::body::full(Bytes::new()))
        .expect("request")
}

/// A list path.
const LIST: Landing = Landing {
    list_path: true,
    routed_path: true,
    read_body: false,
    override_moves: false,
    form_moves: 0,
    ambiguous_path: false,
};

/// Off a list path, where an override moves the request to another route.
const ROUTED: Landing = Landing {
    list_path: false,
    override_moves: true,
    ..LIST
};

#[test]
fn routed_paths_refuse_what_a_backend_could_read_as_another_method() {
    let refused = [
        ("get", "/events", vec![]),
        ("Get", "/events", vec![]),
        ("head", "/events", vec![]),
        ("pOsT", "/events", vec![]),
        ("POST", "/events?_method=GET", vec![]),
        ("POST", "/events?a=1&_method=get", vec![]),
        ("PUT", "/events?_METHOD=head", vec![]),
        ("POST", "/events?%5Fmethod=GET", vec![]),
        ("POST", "/events?_method[]=GET", vec![]),
        ("POST", "/events?.method=GET", vec![]),
        ("POST", "/events?%5Bmethod=head", vec![]),
        // Rack 2 splits pairs at `;` as well as `&`.
        ("POST", "/events?a=1;_method=GET", vec![]),
        ("POST", "/events?a=1;+.method=head", vec![]),
        ("GET", "/events", vec![("content-length", "12")]),
        ("GET", "/events", vec![("transfer-encoding", "chunked")]),
        ("HEAD", "/events", vec![("content-length", "1")]),
        (
            "GET",
            "/events",
            vec![("connection", "upgrade"), ("upgrade", "websocket")],
        ),
    ];
    let (list, routed) = (LIST, ROUTED);
    for (method, target, headers) in refused {
        let req = request(method, target, &headers);
        assert!(check(&req, list).is_err(), "{method} {target} {headers:?}");
        // Off list paths too, but for Upgrade (a WebSocket route may be a plain route).
        if !headers.iter().any(|(h, _)| *h == "upgrade") {
            assert!(
                check(&req, routed).is_err(),
                "{method} {target} {headers:?}"
            );
        }
    }
}

#[test]
fn routed_paths_pass_what_every_backend_reads_as_sent() {
    let (list, routed, unrouted) = (LIST, ROUTED, Landing::default());
    let passed = [
        (
            "GET",
            "/events?limit=5",
            vec![("content-length", "0")],
            list,
        ),
        ("POST", "/events?_method=POST", vec![], list),
        // Another method's override that reaches the same route (a Rails form).
        ("POST", "/events?_method=DELETE", vec![], list),
        (
            "POST",
            "/users/1?_method=patch",
            vec![],
            Landing {
                list_path: false,
                ..list
            },
        ),
        ("POST", "/events", vec![("content-length", "12")], list),
        ("PURGE", "/events", vec![], list),
        ("get", "/other", vec![], unrouted),
        ("POST", "/other?_method=GET", vec![], unrouted),
        (
            "GET",
            "/search",
            vec![("content-length", "12")],
            Landing {
                read_body: true,
                ..routed
            },
        ),
    ];
    for (method, target, headers, at) in passed {
        let req = request(method, target, &headers);
        assert_eq!(check(&req, at), Ok(()), "{method} {target}");
    }
    let moved = request("POST", "/users/1?_method=DELETE", &[]);
    assert!(
        check(&moved, routed).is_err(),
        "an override to another route"
    );
    // A GET body is refused on any path, routed or not, unless allowed.
    let body = request("GET", "/other", &[("content-length", "3")]);
    assert!(check(&body, unrouted).is_err());
}

#[test]
fn connect_is_refused_everywhere() {
    let req = http::Request::builder()
        .method(Method::CONNECT)
        .uri("example.com:443")
        .body(crate::body::full(Bytes::new()))
        .expect("request");
    assert_eq!(check(&req, Landing::default()), Err(MethodError::Connect));
}
