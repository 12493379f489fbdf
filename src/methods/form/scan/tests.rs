//! The streaming scan with scripted bodies: every spelling the router's own check reads, split
//! at every byte, the last frame held back for the verdict, and uploads passed whole.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;

use http_body::{Body as HttpBody, Frame};

use super::*;
use crate::BoxError;

/// GET and HEAD would move the request (bits 0 and 1 of STANDARD).
const MOVES: u16 = 0b11;

fn verdict(kind: Form, body: &[u8], cut: usize) -> Option<MethodError> {
    let mut scan = Scan::new(kind, MOVES);
    for piece in body.chunks(cut) {
        scan.feed(piece);
    }
    scan.end()
}

#[test]
fn urlencoded_overrides_are_found_however_spelled_and_split() {
    let refused: &[&[u8]] = &[
        b"_method=GET",
        b"a=1&_method=get&b=2",
        b"%5Fmethod=GET",
        b"_METHOD=%47%45%54",
        b"+_method=GET",
        b".method=head",
        b"[method=GET",
        b"_method_x=GET",
        b"_method=GET++",
        b"a=%zz&_method=%20GET",
        b"a=1;_method=GET",
        b"a=1;+[method=head",
    ];
    for body in refused {
        for cut in 1..=body.len() {
            assert!(
                verdict(Form::UrlEncoded, body, cut).is_some(),
                "{:?} in pieces of {cut}",
                String::from_utf8_lossy(body)
            );
        }
    }
    let passed: &[&[u8]] = &[
        b"_method=DELETE",
        b"_method=GETX",
        b"_method=G ET",
        b"method=GET",
        b"x_method=GET",
        b"a=_method%3DGET",
        b"_method",
        b"_method=GET%",
        b"_method=GET%4",
        b"",
    ];
    for body in passed {
        for cut in 1..=body.len().max(1) {
            assert!(
                verdict(Form::UrlEncoded, body, cut).is_none(),
                "{:?} in pieces of {cut}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

#[test]
fn multipart_parts_named_method_are_read_for_their_value() {
    let form = |name: &str, value: &str| {
        format!(
            "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nname=\"x\" GET\r\n--b\r\nContent-Disposition: form-data; {name}\r\n\r\n{value}\r\n--b--\r\n"
        )
    };
    for cut in [1, 3, 7, 50] {
        let get = form("name=\"_method\"", "GET");
        assert!(
            verdict(Form::Multipart, get.as_bytes(), cut).is_some(),
            "{cut}"
        );
        let bare = form("NAME=_method", " head ");
        assert!(
            verdict(Form::Multipart, bare.as_bytes(), cut).is_some(),
            "{cut}"
        );
        let patch = form("name=\"_method\"", "PATCH");
        assert!(
            verdict(Form::Multipart, patch.as_bytes(), cut).is_none(),
            "{cut}"
        );
        let bare = form("name=\"_method\"", "GET").replace("\r\n", "\n");
        assert!(
            verdict(Form::Multipart, bare.as_bytes(), cut).is_some(),
            "bare LF, {cut}"
        );
        // PHP folds `.`, `[` and leading spaces into the name `_method`.
        for name in [
            "name=\".method\"",
            "name=\"   [method\"",
            "name = \"_method\"",
            "name=_METHOD[]",
        ] {
            let folded = form(name, "GET").replace("form-data; ", "form-data;");
            assert!(
                verdict(Form::Multipart, folded.as_bytes(), cut).is_some(),
                "{name}, {cut}"
            );
        }
        for name in [
            "name=\"title\"",
            "filename=\"_method\"",
            "name=\"x_method\"",
        ] {
            let other = form(name, "GET");
            assert!(
                verdict(Form::Multipart, other.as_bytes(), cut).is_none(),
                "{name}, {cut}"
            );
        }
    }
}

#[test]
fn json_top_level_method_keys_are_read_however_escaped_and_split() {
    let refused: &[&[u8]] = &[
        br#"{"_method":"GET"}"#,
        br#" { "a" : [1, {"b": "c"}], "_method" : " get " } "#,
        br#"{"\u005fmethod":"\u0047ET"}"#,
        br#"{"_METHOD":"head","x":1}"#,
        br#"{"a":"\"_method\":","_method":"GET"}"#,
        br#"{"_method":"POST","_method":"GET"}"#,
    ];
    for body in refused {
        for cut in 1..=body.len() {
            assert!(
                verdict(Form::Json, body, cut).is_some(),
                "{:?} in pieces of {cut}",
                String::from_utf8_lossy(body)
            );
        }
    }
    let passed: &[&[u8]] = &[
        br#"{"_method":"DELETE"}"#,
        br#"{"a":{"_method":"GET"}}"#,
        br#"[{"_method":"GET"}]"#,
        br#"{"_method":["GET"]}"#,
        br#"{"_method":null,"x":"GET"}"#,
        br#"{"x_method":"GET","_methods":"GET"}"#,
        br#"{"a":"_method","b":"GET"}"#,
        br#"{"_method":"G\u00c9T"}"#,
        br#"{"_method":"GET"#,
        br#"{"a":[],"b":"x\"}","_method":"PUT"}"#,
        br#"{"a":"\",\"_method\":\"GET\"}"}"#,
        b"",
    ];
    for body in passed {
        for cut in 1..=body.len().max(1) {
            assert!(
                verdict(Form::Json, body, cut).is_none(),
                "{:?} in pieces of {cut}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

/// A scripted body of frames; the last one says it ends the body.
struct Frames(VecDeque<&'static str>);

impl HttpBody for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|s| Ok(Frame::data(Bytes::from(s)))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

#[tokio::test]
async fn the_last_frame_waits_for_the_verdict() {
    let body = |frames: &[&'static str]| {
        Box::pin(Scanned::new(
            Frames(frames.iter().copied().collect()),
            Scan::new(Form::UrlEncoded, MOVES),
        ))
    };
    // Passed: every frame, in order; the first comes out only when the second arrives.
    let mut passed = body(&["a=1&", "b=2&", "c=3"]);
    let mut got = Vec::new();
    while let Some(frame) = passed.frame().await {
        got.push(frame.expect("data").into_data().expect("data"));
    }
    assert_eq!(got, ["a=1&", "b=2&", "c=3"]);
    assert!(passed.is_end_stream());
    // Refused: the frames before the held one pass; the held and the last become the error.
    let mut refused = body(&["a=1&", "_meth", "od=GET"]);
    assert_eq!(
        refused
            .frame()
            .await
            .expect("a frame")
            .expect("data")
            .into_data()
            .expect("data"),
        "a=1&"
    );
    let error = refused
        .frame()
        .await
        .expect("a frame")
        .expect_err("refused");
    assert!(error.downcast_ref::<MethodError>().is_some());
}
