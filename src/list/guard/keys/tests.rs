use super::*;

fn field(f: &str) -> KeyField {
    KeyField::new(f.to_owned(), "p".to_owned())
}

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).expect("valid json")
}

#[test]
fn extracts_raw_values_at_any_depth() {
    let item =
        br#"{"id": 99999999999999999999, "meta": {"at": "2026-01-01T00:00:00Z"}, "l": [1, "x"]}"#;
    let keys = extract(item, &[field("/meta/at"), field("/id")]).expect("keys");
    assert_eq!(keys[0].get(), r#""2026-01-01T00:00:00Z""#);
    assert_eq!(keys[1].get(), "99999999999999999999");
    assert_eq!(
        extract(item, &[field("/l/1")]).expect("index")[0].get(),
        r#""x""#
    );
    assert!(extract(item, &[field("/missing")]).is_none());
    assert!(
        extract(item, &[field("/meta")]).is_none(),
        "objects are not keys"
    );
    assert!(extract(br#"{"id": null}"#, &[field("/id")]).is_none());
}

#[test]
fn order_is_strict_and_tuple_wise() {
    let a = vec![raw("\"2026-01-01T00:00:00Z\""), raw("5")];
    let b = vec![raw("\"2026-01-01T00:00:00Z\""), raw("6")];
    let c = vec![raw("\"2026-01-01T00:00:01Z\""), raw("1")];
    assert!(strictly_after(&a, &b, Order::Asc));
    assert!(strictly_after(&b, &c, Order::Asc));
    assert!(!strictly_after(&b, &a, Order::Asc));
    assert!(!strictly_after(&a, &a, Order::Asc), "ties are a violation");
    assert!(strictly_after(&c, &b, Order::Desc));
    assert!(
        !strictly_after(&[raw("1")], &[raw("\"2\"")], Order::Asc),
        "mixed types"
    );
    assert!(
        strictly_after(&[raw("9")], &[raw("10")], Order::Asc),
        "numeric, not lexical"
    );
}
