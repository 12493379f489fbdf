use std::fmt::Write as _;
use std::ops::ControlFlow;

use proptest::prelude::*;
use serde_json::Value;
use serde_json::value::RawValue;

use super::*;

fn path(segments: &[&str]) -> ItemsPath {
    ItemsPath(segments.iter().map(|s| (*s).to_owned()).collect())
}

/// Feeds `body` in the given chunks, then finishes.
fn scan_chunks(segments: &[&str], chunks: &[&[u8]]) -> Result<Vec<Event>, ScanError> {
    let mut scanner = Scanner::new(path(segments), DEFAULT_MAX_DEPTH);
    let mut events = Vec::new();
    for chunk in chunks {
        let flow = scanner.feed(chunk, |event| {
            events.push(event);
            ControlFlow::Continue(())
        })?;
        assert_eq!(flow, ControlFlow::Continue(()));
    }
    scanner.finish()?;
    assert_eq!(
        scanner.offset(),
        chunks.iter().map(|c| c.len() as u64).sum::<u64>()
    );
    Ok(events)
}

/// Scans `body` whole, one byte at a time and in every chunk size, and checks they agree.
fn scan(segments: &[&str], body: &str) -> Result<Vec<Event>, ScanError> {
    let body = body.as_bytes();
    let whole = scan_chunks(segments, &[body]);
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(scan_chunks(segments, &bytes), whole, "one byte at a time");
    for size in 2..body.len() {
        let chunks: Vec<&[u8]> = body.chunks(size).collect();
        assert_eq!(scan_chunks(segments, &chunks), whole, "chunks of {size}");
    }
    // Every single split point, with an empty chunk in the middle.
    for cut in 0..=body.len() {
        let (a, b) = body.split_at(cut);
        assert_eq!(scan_chunks(segments, &[a, b"", b]), whole, "cut at {cut}");
    }
    whole
}

/// The item texts found in `body`.
fn items<'a>(segments: &[&str], body: &'a str) -> Vec<&'a str> {
    scan(segments, body)
        .unwrap_or_else(|e| panic!("{body}: {e}"))
        .into_iter()
        .filter_map(|event| match event {
            Event::Item { start, end } => Some(&body[start as usize..end as usize]),
            _ => None,
        })
        .collect()
}

fn err(segments: &[&str], body: &str) -> ScanError {
    match scan(segments, body) {
        Ok(events) => panic!("{body} accepted: {events:?}"),
        Err(e) => e,
    }
}

#[test]
fn top_level_array_events() {
    let body = " [1, \"two\" ,{\"three\":3}]\n";
    assert_eq!(
        scan(&[], body),
        Ok(vec![
            Event::RootOpen {
                offset: 1,
                is_object: false
            },
            Event::ItemsOpen { offset: 1 },
            Event::Item { start: 2, end: 3 },
            Event::Item { start: 5, end: 10 },
            Event::Item { start: 12, end: 23 },
            Event::ItemsClose { offset: 23 },
            Event::RootClose { end: 24 },
        ])
    );
}

#[test]
fn every_kind_of_item() {
    let body = r#"[1,-0,0.5,-12.5e+3,1E9,0e-1,"two",{"three":3},[4],true,false,null,"",{},[]]"#;
    assert_eq!(
        items(&[], body),
        [
            "1",
            "-0",
            "0.5",
            "-12.5e+3",
            "1E9",
            "0e-1",
            "\"two\"",
            "{\"three\":3}",
            "[4]",
            "true",
            "false",
            "null",
            "\"\"",
            "{}",
            "[]"
        ]
    );
}

#[test]
fn typical_objects() {
    let first = r#"{"id":1,"s":"a\"b","f":1.5e3,"t":true,"n":null,"o":{"x":[1,{"y":"z"}]},"e":"\u00e9","z":0}"#;
    let second = r#"{"k":false,"\u0041":-2,"l":[],"m":{}}"#;
    let body = format!("[{first},{second}, {{}} ]");
    assert_eq!(items(&[], &body), [first, second, "{}"]);
}

#[test]
fn pretty_printed() {
    let body = "[\r\n  {\n    \"a\" : [ 1 , 2 ] ,\n\t\"b\":null\n  } ,\n  7\n]\n\n";
    assert_eq!(
        items(&[], body),
        ["{\n    \"a\" : [ 1 , 2 ] ,\n\t\"b\":null\n  }", "7"]
    );
}

#[test]
fn envelope_with_members_before_and_after() {
    let body = r#"{"meta":{"data":[9]},"count":2,"items":[0],"data":[{"a":1},{"b":[2]}],"next":"x","data2":[3]}"#;
    let events = scan(&["data"], body).unwrap();
    assert_eq!(
        events.first(),
        Some(&Event::RootOpen {
            offset: 0,
            is_object: true
        })
    );
    assert!(events.contains(&Event::ItemsOpen { offset: 50 }));
    assert_eq!(
        events.last(),
        Some(&Event::RootClose {
            end: body.len() as u64
        })
    );
    assert_eq!(items(&["data"], body), [r#"{"a":1}"#, r#"{"b":[2]}"#]);
}

#[test]
fn nested_path() {
    let body = r#"{"items":[0],"result":{"total":3,"items":[{"id":1},{"id":2}],"x":{}},"z":1}"#;
    assert_eq!(
        items(&["result", "items"], body),
        [r#"{"id":1}"#, r#"{"id":2}"#]
    );
    // The same key deeper or shallower is not the path.
    let body = r#"{"x":{"result":{"items":[5]}},"result":{"a":{"items":[6]},"items":[7]}}"#;
    assert_eq!(items(&["result", "items"], body), ["7"]);
}

#[test]
fn escaped_keys() {
    assert_eq!(items(&["data"], r#"{"d\u0061ta":[1]}"#), ["1"]);
    assert_eq!(
        items(&["data"], r#"{"\u0064\u0041ta":[0],"data":[1]}"#),
        ["1"]
    );
    assert_eq!(items(&["été"], r#"{"\u00e9t\u00E9":[1]}"#), ["1"]);
    assert_eq!(items(&["été"], "{\"été\":[1]}"), ["1"]);
    assert_eq!(items(&["😀"], r#"{"\ud83d\ude00":[1]}"#), ["1"]);
    assert_eq!(items(&["a/b"], r#"{"a\/b":[1]}"#), ["1"]);
    assert_eq!(items(&["a\"b\\"], r#"{"a\"b\\":[1]}"#), ["1"]);
    assert_eq!(items(&["a\nb\tc"], r#"{"a\nb\u0009c":[1]}"#), ["1"]);
    // Prefixes, extensions and lone surrogates do not match.
    assert_eq!(
        items(
            &["data"],
            r#"{"dat":[0],"datax":[0],"dat\u0061x":[0],"data":[1]}"#
        ),
        ["1"]
    );
    assert_eq!(
        items(
            &["\u{fffd}"],
            r#"{"\ud83d":[0],"\ude00":[0],"\ud83d\u0041":[0],"�":[1]}"#
        ),
        ["1"]
    );
    assert_eq!(items(&[""], r#"{"":[1]}"#), ["1"]);
}

#[test]
fn strings_with_structural_bytes() {
    let body = r#"[ "[]{},:\"\\", "\\", "\"", "\u1234\/\b\f\n\r\t", "]" ,"{"]"#;
    assert_eq!(
        items(&[], body),
        [
            r#""[]{},:\"\\""#,
            r#""\\""#,
            r#""\"""#,
            r#""\u1234\/\b\f\n\r\t""#,
            r#""]""#,
            r#""{""#
        ]
    );
    let body = r#"{"a\"data":[0],"b":"\"data\":[0]","data":["x\"]"]}"#;
    assert_eq!(items(&["data"], body), [r#""x\"]""#]);
}

#[test]
fn empty_arrays() {
    assert_eq!(
        scan(&[], "[]"),
        Ok(vec![
            Event::RootOpen {
                offset: 0,
                is_object: false
            },
            Event::ItemsOpen { offset: 0 },
            Event::ItemsClose { offset: 1 },
            Event::RootClose { end: 2 },
        ])
    );
    assert_eq!(
        scan(&["data"], r#"{"data": [ ] }"#),
        Ok(vec![
            Event::RootOpen {
                offset: 0,
                is_object: true
            },
            Event::ItemsOpen { offset: 9 },
            Event::ItemsClose { offset: 11 },
            Event::RootClose { end: 14 },
        ])
    );
}

#[test]
fn nested_arrays_inside_items() {
    assert_eq!(
        items(&[], "[[1,[2]],[[]],[{\"a\":[[]]}]]"),
        ["[1,[2]]", "[[]]", "[{\"a\":[[]]}]"]
    );
}

#[test]
fn a_second_member_on_the_items_path_is_refused() {
    // Clients keep the last of two members: a second list would go uncounted.
    for (segments, body, key, offset) in [
        (&["data"][..], r#"{"data":[1],"data":[2]}"#, "data", 19),
        (&["data"], r#"{"data":[1],"data":2}"#, "data", 19),
        (
            &["data"],
            r#"{"data":[1], "n":1, "d\u0061ta":[2,3]}"#,
            "data",
            32,
        ),
        (&["a", "b"], r#"{"a":{"b":[1],"b":[2]}}"#, "b", 18),
        (&["a", "b"], r#"{"a":{"b":[1]},"a":{"b":[2]}}"#, "a", 19),
    ] {
        let key = key.to_owned();
        assert_eq!(
            err(segments, body),
            ScanError::DuplicateItems { key, offset },
            "{body}"
        );
    }
    // The same name elsewhere (inside another member, inside items) is no second member.
    assert_eq!(
        items(&["data"], r#"{"data":[1],"meta":{"data":[2]}}"#),
        ["1"]
    );
    assert_eq!(
        items(&["data"], r#"{"data":[{"data":[9]}]}"#),
        [r#"{"data":[9]}"#]
    );
    assert_eq!(
        items(&["a", "b"], r#"{"a":{"b":[1],"c":{"b":2}},"b":3}"#),
        ["1"]
    );
}

#[test]
fn unexpected_bytes() {
    for (segments, body, offset) in [
        (&[][..], "[1,]", 3),
        (&[], "[,1]", 1),
        (&[], "[1 2]", 3),
        (&[], "[1,,2]", 3),
        (&[], "[tru]", 4),
        (&[], "[nul ]", 4),
        (&[], "[True]", 1),
        (&[], "[01]", 2),
        (&[], "[-]", 2),
        (&[], "[1.]", 3),
        (&[], "[.5]", 1),
        (&[], "[1e]", 3),
        (&[], "[1e+]", 4),
        (&[], "[+1]", 1),
        (&[], r#"["\x"]"#, 3),
        (&[], r#"["\u12g4"]"#, 6),
        (&[], "[}", 1),
        (&[], "[{]", 2),
        (&[], "[{\"a\"}]", 5),
        (&[], "[{\"a\":}]", 6),
        (&[], "[{\"a\":1,}]", 8),
        (&[], "[{1:2}]", 2),
        (&[], "[{\"a\":1]]", 7),
        (&[], "[[1}]", 3),
        (&[], r#"[{"a":tru}]"#, 9),
        (&[], r#"[{"a":nul}]"#, 9),
        (&[], r#"[{"a":12x}]"#, 8),
        (&[], r#"[{"a":01}]"#, 7),
        (&[], r#"[{"a":1.}]"#, 8),
        (&[], r#"[{"a":-}]"#, 7),
        (&[], r#"[{"a" 1}]"#, 6),
        (&[], r#"[{"a":"x" "b":1}]"#, 10),
        (&[], r#"[{"a":1,"b"}]"#, 11),
        (&[], r#"[{"a\q":1}]"#, 5),
        (&[], r#"[{"a":"\q"}]"#, 8),
        (&[], r#"[{"a":1]"#, 7),
        (&[], "[\u{feff}]", 1),
        (&[], " \u{feff}[]", 1),
        (&[], "<html>", 0),
        (&["data"], r#"{"data" [1]}"#, 8),
        (&["data"], r#"{"d\ata":[1]}"#, 4),
        (&["data"], r#"{"d\u00zz":[1]}"#, 7),
        (&["data"], r#"{"data":x}"#, 8),
    ] {
        assert_eq!(
            err(segments, body),
            ScanError::UnexpectedByte {
                byte: body.as_bytes()[offset],
                offset: offset as u64
            },
            "{body}"
        );
    }
}

#[test]
fn a_leading_byte_order_mark_is_skipped_and_a_broken_one_refused() {
    // Every split of the mark across chunks (scan feeds every chunking).
    assert_eq!(items(&[], "\u{feff}[1,2]"), ["1", "2"]);
    assert_eq!(items(&["data"], "\u{feff}{\"data\":[3]}"), ["3"]);
    for (body, offset) in [(&b"\xEF\xBB[]"[..], 2), (&b"\xEF[]"[..], 1)] {
        let whole = scan_chunks(&[], &[body]);
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let error = ScanError::UnexpectedByte { byte: b'[', offset };
        assert_eq!(whole, Err(error.clone()));
        assert_eq!(scan_chunks(&[], &bytes), Err(error));
    }
    // A mark begun and not finished is no document.
    assert!(scan_chunks(&[], &[b"\xEF\xBB"]).is_err());
}

#[test]
fn wrong_root() {
    assert_eq!(
        err(&[], r#" {"a":1}"#),
        ScanError::WrongRoot {
            expected: "array",
            byte: b'{',
            offset: 1
        }
    );
    assert!(matches!(
        err(&["data"], "[1]"),
        ScanError::WrongRoot {
            expected: "object",
            ..
        }
    ));
    assert!(matches!(err(&[], "\"s\""), ScanError::WrongRoot { .. }));
    assert!(matches!(err(&[], "12"), ScanError::WrongRoot { .. }));
    assert!(matches!(err(&[], "null"), ScanError::WrongRoot { .. }));
}

#[test]
fn too_deep() {
    let mut scanner = Scanner::new(path(&[]), 3);
    let ok = scanner.feed(b"[[[1]]]", |_| ControlFlow::Continue(()));
    assert_eq!(ok, Ok(ControlFlow::Continue(())));
    let mut scanner = Scanner::new(path(&[]), 3);
    assert_eq!(
        scanner.feed(b"[[[{}]]]", |_| ControlFlow::Continue(())),
        Err(ScanError::TooDeep {
            max_depth: 3,
            offset: 3
        })
    );
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(matches!(
        scan_chunks(&[], &[deep.as_bytes()]),
        Err(ScanError::TooDeep {
            max_depth: DEFAULT_MAX_DEPTH,
            offset: 128
        })
    ));
    let mut scanner = Scanner::new(path(&[]), 0);
    assert!(matches!(
        scanner.feed(b"[]", |_| ControlFlow::Continue(())),
        Err(ScanError::TooDeep { .. })
    ));
}

#[test]
fn trailing_data() {
    assert_eq!(
        err(&[], "[1] x"),
        ScanError::TrailingData {
            byte: b'x',
            offset: 4
        }
    );
    assert!(matches!(
        err(&[], "[1][2]"),
        ScanError::TrailingData { offset: 3, .. }
    ));
    assert!(matches!(
        err(&["data"], r#"{"data":[]}}"#),
        ScanError::TrailingData { .. }
    ));
    assert_eq!(items(&[], "\t\r\n [1] \t\r\n "), ["1"]);
}

#[test]
fn items_not_found() {
    for (segments, body, offset) in [
        (&["data"][..], r#"{"x":[1]}"#, 8),
        (&["data"], "{}", 1),
        (&["data"], r#"{"x":{"data":[1]}}"#, 17),
        (&["data"], r#"{"data":1,"data":[1]}"#, 8),
        (&["data"], r#"{"data":{"data":[1]}}"#, 8),
        (&["data"], r#"{"data":null}"#, 8),
        (&["data"], r#"{"data":"[1]"}"#, 8),
        (
            &["result", "items"],
            r#"{"result":{"x":[]},"items":[1]}"#,
            17,
        ),
        (&["result", "items"], r#"{"result":[{"items":[1]}]}"#, 10),
        (&["result", "items"], r#"{"result":{"items":{}}}"#, 19),
        (&["result", "items"], r#"{"items":[1],"result":{}}"#, 23),
    ] {
        assert_eq!(
            err(segments, body),
            ScanError::ItemsNotFound { offset },
            "{body}"
        );
    }
}

#[test]
fn unexpected_end() {
    for (segments, body) in [
        (&[][..], ""),
        (&[], " \n"),
        (&[], "["),
        (&[], "[1"),
        (&[], "[1,"),
        (&[], "[\"abc"),
        (&[], "[\"abc\\"),
        (&[], "[\"\\u12"),
        (&[], "[tr"),
        (&[], "[[1]"),
        (&["data"], "{\"data\":[1]"),
        (&["data"], "{\"da"),
        (&["data"], "{\"data\""),
        (&["data"], "{\"data\":"),
    ] {
        assert_eq!(
            err(segments, body),
            ScanError::UnexpectedEnd {
                offset: body.len() as u64
            },
            "{body:?}"
        );
    }
}

#[test]
fn errors_are_sticky() {
    let mut scanner = Scanner::new(path(&[]), DEFAULT_MAX_DEPTH);
    let error = scanner.feed(b"[1,]", |_| ControlFlow::Continue(()));
    assert!(matches!(
        error,
        Err(ScanError::UnexpectedByte { offset: 3, .. })
    ));
    assert_eq!(scanner.feed(b"", |_| ControlFlow::Continue(())), error);
    assert_eq!(scanner.finish(), Err(error.unwrap_err()));
}

#[test]
fn break_stops_scanning() {
    let mut scanner = Scanner::new(path(&["data"]), DEFAULT_MAX_DEPTH);
    let mut seen = Vec::new();
    let flow = scanner.feed(br#"{"data":[1,"two",3,4]}"#, |event| {
        seen.push(event);
        if seen.len() == 4 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(flow, Ok(ControlFlow::Break(())));
    assert_eq!(seen.last(), Some(&Event::Item { start: 11, end: 16 }));
    assert_eq!(seen.len(), 4);
    assert_eq!(scanner.offset(), 22);
    // Stopped: nothing more is scanned or reported.
    let flow = scanner.feed(b"garbage", |event| panic!("{event:?}"));
    assert_eq!(flow, Ok(ControlFlow::Break(())));
    assert_eq!(scanner.finish(), Ok(()));
}

#[test]
fn cut_after_an_item_is_valid_json() {
    let body = r#"{"a":{"data":[0]},"data":[{"x":[1,2]}, "s\"]", 12.5e3 ,true],"z":null}"#;
    for event in scan(&["data"], body).unwrap() {
        if let Event::Item { end, .. } = event {
            let cut = format!("{}]}}", &body[..end as usize]);
            let value: Value = serde_json::from_str(&cut).unwrap();
            assert!(value["data"].is_array(), "{cut}");
        }
    }
}

// ---- properties ----

/// Arbitrary JSON values, with strings full of escapes and non-ASCII.
fn json_value() -> impl Strategy<Value = Value> {
    let string = prop_oneof![
        any::<String>(),
        "[\"\\\\/\\[\\]{}:, \t\n\u{0}-\u{1f}aé😀\u{2028}]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-1000.0..1000.0f64).prop_map(Value::from),
        string.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((string.clone(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn serialize(value: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(value).unwrap()
    } else {
        serde_json::to_string(value).unwrap()
    }
}

/// A body with the list at one of a few paths, members around it, and random whitespace.
#[derive(Debug, Clone)]
struct Case {
    segments: Vec<&'static str>,
    body: String,
    /// Where the array text starts in `body`, and the array text.
    list_at: usize,
    list_len: usize,
}

fn case() -> impl Strategy<Value = Case> {
    let list = prop::collection::vec(json_value(), 0..12);
    let members = || {
        prop::collection::vec(
            (
                prop_oneof![
                    Just(r#""meta""#),
                    Just(r#""dat""#),
                    Just(r#""datum""#),
                    Just(r#""res""#)
                ],
                json_value(),
            ),
            0..3,
        )
    };
    let ws = "[ \t\r\n]{0,2}";
    (0..5usize, list, any::<bool>(), members(), members(), ws, ws).prop_map(
        |(shape, list, pretty, before, after, ws1, ws2)| {
            let list_text = serialize(&Value::Array(list), pretty);
            let (segments, keys): (Vec<&'static str>, Vec<&'static str>) = match shape {
                0 => (vec![], vec![]),
                1 => (vec!["data"], vec![r#""data""#]),
                2 => (vec!["data"], vec![r#""d\u0061ta""#]),
                3 => (vec!["result", "items"], vec![r#""result""#, r#""items""#]),
                _ => (vec!["é", "data"], vec![r#""\u00e9""#, r#""dat\u0061""#]),
            };
            let mut body = ws1.clone();
            for key in &keys {
                body.push('{');
                for (k, v) in &before {
                    let _ = write!(body, "{k}{ws2}:{}{ws1},", serialize(v, pretty));
                }
                let _ = write!(body, "{ws2}{key}{ws1}:{ws2}");
            }
            let list_at = body.len();
            body.push_str(&list_text);
            for _ in &keys {
                for (k, v) in &after {
                    let _ = write!(body, "{ws1},{k}:{ws2}{}", serialize(v, pretty));
                }
                body.push_str(&ws2);
                body.push('}');
            }
            body.push_str(&ws2);
            Case {
                segments,
                body,
                list_at,
                list_len: list_text.len(),
            }
        },
    )
}

/// Split points for a body of `len` bytes.
fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw.iter().map(|c| c % (len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

fn split<'a>(body: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut from = 0;
    for &cut in cuts {
        chunks.push(&body[from..cut]);
        from = cut;
    }
    chunks.push(&body[from..]);
    chunks
}

/// Scans `body` in the chunks given by `cuts`; the events, or the error.
fn scan_split(segments: &[&str], body: &[u8], cuts: &[usize]) -> Result<Vec<Event>, ScanError> {
    let mut scanner = Scanner::new(path(segments), DEFAULT_MAX_DEPTH);
    let mut events = Vec::new();
    for chunk in split(body, cuts) {
        let _flow = scanner.feed(chunk, |event| {
            events.push(event);
            ControlFlow::Continue(())
        })?;
    }
    scanner.finish()?;
    Ok(events)
}

proptest! {
    #[test]
    fn spans_match_serde_json(case in case(), raw_cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let body = case.body.as_bytes();
        let events = scan_split(&case.segments, body, &cuts(body.len(), &raw_cuts))
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", case.body)))?;

        let list = &case.body[case.list_at..case.list_at + case.list_len];
        let raws: Vec<&RawValue> = serde_json::from_str(list).unwrap();
        let expected: Vec<(u64, u64)> = raws
            .iter()
            .map(|raw| {
                let start = raw.get().as_ptr() as usize - case.body.as_ptr() as usize;
                (start as u64, (start + raw.get().len()) as u64)
            })
            .collect();
        let spans: Vec<(u64, u64)> = events
            .iter()
            .filter_map(|event| match *event {
                Event::Item { start, end } => Some((start, end)),
                _ => None,
            })
            .collect();
        prop_assert_eq!(&spans, &expected);
        let open = Event::ItemsOpen { offset: case.list_at as u64 };
        let close = Event::ItemsClose { offset: (case.list_at + case.list_len - 1) as u64 };
        prop_assert!(events.contains(&open));
        prop_assert!(events.contains(&close));
        let root_end = case.body.trim_end_matches([' ', '\t', '\r', '\n']).len() as u64;
        prop_assert_eq!(events.last(), Some(&Event::RootClose { end: root_end }));

        // Cutting after item k and closing the path leaves valid JSON with k + 1 items.
        let closers = format!("]{}", "}".repeat(case.segments.len()));
        for (k, &(_, end)) in spans.iter().enumerate() {
            let cut = format!("{}{closers}", &case.body[..end as usize]);
            let value: Value = serde_json::from_str(&cut)
                .map_err(|e| TestCaseError::fail(format!("{e}: {cut}")))?;
            let list = case.segments.iter().fold(&value, |v, s| &v[*s]);
            prop_assert_eq!(list.as_array().map(Vec::len), Some(k + 1));
        }
    }

    #[test]
    fn garbage_never_panics_and_ignores_chunking(
        body in prop::collection::vec(
            prop_oneof![
                3 => prop::sample::select(b"{}[],:\"\\ 0123456789-+.eEtrufalsn".to_vec()),
                1 => any::<u8>(),
            ],
            0..64,
        ),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..8),
        segments in prop::sample::select(vec![vec![], vec!["a"], vec!["a", "b"]]),
    ) {
        let whole = scan_split(&segments, &body, &[]);
        let split = scan_split(&segments, &body, &cuts(body.len(), &raw_cuts));
        prop_assert_eq!(&whole, &split);
        let parsed = serde_json::from_slice::<Vec<&RawValue>>(&body);
        if let (true, Ok(raws)) = (segments.is_empty(), parsed) {
            prop_assert!(whole.is_ok(), "{:?}", whole);
            prop_assert_eq!(
                whole.unwrap().iter().filter(|e| matches!(e, Event::Item { .. })).count(),
                raws.len()
            );
        }
    }

    #[test]
    fn mutated_json_agrees_with_serde_json(
        case in case(),
        edits in prop::collection::vec(
            (any::<usize>(), prop::sample::select(b"{}[],:\"\\ \t019-+.eEtrufalsnx".to_vec())),
            1..3,
        ),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let mut body = case.body.into_bytes();
        for (at, byte) in edits {
            let at = at % body.len();
            body[at] = byte;
        }
        // Chunking never changes the outcome: a byte at a time goes through the state
        // machine only, whole chunks mostly through the fast paths.
        let result = scan_split(&case.segments, &body, &[]);
        let bytes: Vec<usize> = (1..body.len()).collect();
        prop_assert_eq!(&scan_split(&case.segments, &body, &bytes), &result);
        let split = scan_split(&case.segments, &body, &cuts(body.len(), &raw_cuts));
        prop_assert_eq!(&split, &result);
        let parsed = serde_json::from_slice::<Vec<&RawValue>>(&body);
        if let (true, Ok(raws)) = (case.segments.is_empty(), parsed) {
            let expected: Vec<Event> = raws
                .iter()
                .map(|raw| {
                    let start = (raw.get().as_ptr() as usize - body.as_ptr() as usize) as u64;
                    Event::Item { start, end: start + raw.get().len() as u64 }
                })
                .collect();
            let events = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let items: Vec<Event> =
                events.into_iter().filter(|e| matches!(e, Event::Item { .. })).collect();
            prop_assert_eq!(items, expected);
        }
    }
}
