use super::*;

#[test]
fn kinds_follow_the_catalog_type() {
    assert_eq!(Kind::of("bigint"), Kind::Integer);
    assert_eq!(Kind::of("double precision"), Kind::Float);
    assert_eq!(Kind::of("boolean"), Kind::Bool);
    assert_eq!(Kind::of("numeric"), Kind::Text);
    assert_eq!(Kind::of("character varying"), Kind::Text);
    // Exact names: arrays and domains are JSON, through `to_json`.
    assert_eq!(Kind::of("numeric[]"), Kind::Json);
    assert_eq!(Kind::of("timestamp with time zone[]"), Kind::Json);
    assert_eq!(Kind::of("timestamp_ms"), Kind::Json);
    assert_eq!(
        Kind::of("timestamp with time zone"),
        Kind::Stamp { zoned: true }
    );
    assert_eq!(Kind::of("integer[]"), Kind::Json);
    assert_eq!(Kind::selected("integer[]", "r.a"), "to_json(r.a)::text");
    assert_eq!(Kind::selected("jsonb", "r.a"), "r.a");
    assert_eq!(Kind::selected("date", "r.a"), "to_json(r.a)::text");
    assert_eq!(Kind::selected("text", "r.a"), "r.a");
}

#[test]
fn records_become_json_lines() {
    let rows = Rows::new(&[
        ("id".to_owned(), Kind::Integer),
        ("note".to_owned(), Kind::Text),
        ("at".to_owned(), Kind::Stamp { zoned: true }),
        ("ok".to_owned(), Kind::Bool),
        ("x".to_owned(), Kind::Float),
        ("doc".to_owned(), Kind::Json),
    ]);
    let mut out = BytesMut::new();
    assert!(rows.push(
        b"1,\"say \"\"hi\"\"\\\n\t\x01\",2024-05-01 10:00:00.5+00,t,NaN,\"{\"\"a\"\":\n 1}\"\n",
        &mut out
    ));
    assert!(rows.push(b"2,,0044-03-15 12:00:00+00 BC,f,1e+20,\n", &mut out));
    assert!(rows.push(b"3,\"\",infinity,,-0.5,[1]\n", &mut out));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "{\"id\":1,\"note\":\"say \\\"hi\\\"\\\\\\n\\t\\u0001\",\"at\":\"2024-05-01T10:00:00.5+00:00\",\"ok\":true,\"x\":\"NaN\",\"doc\":{\"a\":  1}}\n\
         {\"id\":2,\"note\":null,\"at\":\"0044-03-15T12:00:00+00:00 BC\",\"ok\":false,\"x\":1e+20,\"doc\":null}\n\
         {\"id\":3,\"note\":\"\",\"at\":\"infinity\",\"ok\":null,\"x\":-0.5,\"doc\":[1]}\n"
    );
    for line in String::from_utf8_lossy(&out).lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("valid JSON");
    }
    // Too few or too many fields: nothing written.
    let mut out = BytesMut::new();
    assert!(!rows.push(b"1,a\n", &mut out));
    assert!(!rows.push(b"1,a,b,t,1,[],extra\n", &mut out));
    assert!(out.is_empty());
}

proptest::proptest! {
    /// Strings come out as `to_json` writes them, which is how serde_json escapes them too
    /// (`\"`, `\\`, the short forms of five control characters, `\u00xx` for the others),
    /// with or without anything to escape.
    #[test]
    fn strings_are_escaped_as_to_json_escapes_them(
        text in proptest::string::string_regex("[a-z \"\\\\\\x00-\\x1f\\x7f é😀]{0,40}").expect("regex")
    ) {
        let mut out = BytesMut::new();
        super::string(text.as_bytes(), &mut out);
        proptest::prop_assert_eq!(
            String::from_utf8(out.to_vec()).expect("utf-8"),
            serde_json::to_string(&text).expect("json")
        );
    }
}
