use std::sync::Arc;

use serde_json::value::RawValue;

use super::*;
use crate::cursor::route_id;
use crate::list::config::{
    KeyField, KeysetPolicy, ListPolicy, OffsetParam, OnInvalid, OnViolation, Order,
};
use crate::list::scan::ItemsPath;

fn policy(keyset: bool) -> ListPolicy {
    ListPolicy {
        limit_param: "limit".to_owned(),
        offset: OffsetParam::Offset("offset".to_owned()),
        default_limit: 100,
        max_limit: 1000,
        max_offset: 10_000,
        on_violation: OnViolation::Clamp,
        max_items: 1000,
        max_bytes: 1 << 20,
        items: ItemsPath(Vec::new()),
        on_invalid: OnInvalid::Pass,
        keyset: keyset.then(|| {
            Arc::new(KeysetPolicy {
                keys: vec![
                    KeyField::new("/created_at".to_owned(), "created_after".to_owned()),
                    KeyField::new("/id".to_owned(), "id_gt".to_owned()),
                ],
                order: Order::Asc,
                set_params: vec![("sort".to_owned(), "created_at,id".to_owned())],
                cursor_param: "cursor".to_owned(),
                next_cursor_field: None,
                route_id: route_id("events"),
                codec: Arc::new(crate::cursor::test_codec()),
            })
        }),
        report_only: false,
    }
}

fn planned(policy: &ListPolicy, query: &str) -> Result<Planned, PlanError> {
    plan(policy, "/events", query)
}

fn cursor(policy: &ListPolicy, others: &[&str], key: &[&str]) -> String {
    let keyset = policy.keyset.as_ref().expect("keyset");
    let raw: Vec<Box<RawValue>> = key
        .iter()
        .map(|k| RawValue::from_string((*k).to_owned()).expect("json"))
        .collect();
    let refs: Vec<&RawValue> = raw.iter().map(AsRef::as_ref).collect();
    crate::cursor::test_codec().encode(
        keyset.route_id,
        binding_hash(&["/events"], others.iter().copied()),
        &refs,
        std::time::SystemTime::now(),
    )
}

#[test]
fn plain_routes_inject_clamp_and_keep_order() {
    // pagegate's parameters lead; the client's follow in their order.
    let p = policy(false);
    assert_eq!(planned(&p, "").expect("ok").query, "limit=100");
    let clamped = planned(&p, "a=1&limit=5000&b=2").expect("ok");
    assert_eq!(clamped.query, "limit=1000&a=1&b=2");
    assert_eq!(clamped.plan.clamped_from, Some(5000));
    assert_eq!(clamped.plan.page_size, 1000);
    assert!(clamped.plan.keyset.is_none());
}

#[test]
fn keyset_routes_ask_for_one_more_and_sort_by_the_key() {
    let p = policy(true);
    let first = planned(&p, "status=failed&limit=50").expect("ok");
    assert_eq!(first.query, "limit=51&sort=created_at,id&status=failed");
    let keyset = first.plan.keyset.expect("keyset plan");
    assert_eq!(keyset.next_base, "/events?status=failed&limit=50&cursor=");
    assert!(keyset.after.is_none());
    let unbounded = planned(&p, "").expect("ok");
    assert_eq!(
        unbounded.query, "limit=101&sort=created_at,id",
        "no pagination: the first keyset page"
    );
    assert_eq!(
        unbounded.plan.keyset.expect("plan").next_base,
        "/events?cursor="
    );
}

#[test]
fn a_cursor_becomes_the_backends_key_parameters_and_drops_the_offset() {
    let p = policy(true);
    let c = cursor(
        &p,
        &["status=failed"],
        &["\"2026-01-01T00:00:03+01:00\"", "42"],
    );
    let next = planned(&p, &format!("status=failed&cursor={c}&offset=300")).expect("ok");
    assert_eq!(
        next.query,
        "limit=101&created_after=2026-01-01T00%3A00%3A03%2B01%3A00&id_gt=42&sort=created_at,id&status=failed"
    );
    let after = next.plan.keyset.expect("plan").after.expect("after");
    assert_eq!(after[1].get(), "42");
}

#[test]
fn raw_utf8_filters_are_escaped_in_the_next_link_and_bound_as_the_client_sends_them_back() {
    let p = policy(true);
    let first = planned(&p, "name=Jos\u{e9}").expect("ok");
    assert!(
        first.query.ends_with("name=Jos\u{e9}"),
        "forwarded as it came"
    );
    let next_base = first.plan.keyset.expect("keyset").next_base;
    assert_eq!(next_base, "/events?name=Jos%C3%A9&cursor=");
    // The next request comes escaped, with a cursor bound to what the link said; the raw
    // spelling reads as the same filter.
    let c = cursor(&p, &["name=Jos%C3%A9"], &["\"x\"", "1"]);
    assert!(planned(&p, &format!("name=Jos%C3%A9&cursor={c}")).is_ok());
    assert!(planned(&p, &format!("name=Jos\u{e9}&cursor={c}")).is_ok());
}

#[test]
fn cursors_are_bound_to_the_other_parameters() {
    let p = policy(true);
    let c = cursor(&p, &["status=failed"], &["\"x\"", "1"]);
    let replayed = planned(&p, &format!("status=active&cursor={c}"));
    assert!(matches!(
        replayed,
        Err(PlanError::Cursor(crate::cursor::CursorError::WrongFilters))
    ));
    // The page size is not a filter: a client may change it between pages.
    assert!(planned(&p, &format!("status=failed&limit=10&cursor={c}")).is_ok());
}

#[test]
fn reserved_and_repeated_parameters_are_refused() {
    let p = policy(true);
    for (query, param) in [
        ("id_gt=5", "id_gt"),
        ("sort=name", "sort"),
        ("created_after=x", "created_after"),
    ] {
        match planned(&p, query) {
            Err(PlanError::Pagination(PaginationError::Reserved { param: got, .. })) => {
                assert_eq!(got, param);
            }
            other => panic!("{query}: {other:?}"),
        }
    }
    assert!(matches!(
        planned(&p, "cursor=a&cursor=b"),
        Err(PlanError::Pagination(PaginationError::Repeated { .. }))
    ));
    assert!(matches!(
        planned(&p, "Cursor=abc"),
        Err(PlanError::Pagination(PaginationError::Disguised { .. }))
    ));
    assert!(matches!(planned(&p, "cursor="), Err(PlanError::Cursor(_))));
}

#[test]
fn deep_offsets_on_keyset_routes_point_at_the_first_keyset_page() {
    let p = policy(true);
    let Err(PlanError::Pagination(PaginationError::OffsetTooDeep {
        first_page, offset, ..
    })) = planned(&p, "status=failed&offset=500000&limit=20")
    else {
        panic!("expected a deep-offset refusal");
    };
    assert_eq!(offset, 500_000);
    assert_eq!(
        first_page.as_deref(),
        Some("/events?status=failed&limit=20")
    );
    let shallow = planned(&p, "offset=200").expect("a shallow offset is allowed");
    assert_eq!(shallow.query, "limit=101&offset=200&sort=created_at,id");
}

#[test]
fn page_style_offsets_multiply_by_the_page_size() {
    let mut p = policy(false);
    p.offset = OffsetParam::Page {
        name: "page".to_owned(),
        first: 0,
    };
    p.max_offset = 1000;
    assert!(planned(&p, "page=10&limit=100").is_ok());
    assert!(planned(&p, "page=11&limit=100").is_err());
    assert!(
        planned(&p, "page=18446744073709551615&limit=1000").is_err(),
        "no overflow"
    );
}

#[test]
fn every_spelling_a_parser_reads_as_a_controlled_name_is_refused() {
    let p = policy(false);
    let disguises = [
        "%6Cimit=5",
        "LIMIT=5",
        "a=1;limit=5",
        "limit[]=5",
        "limit[x]=5",
        "[limit]=5",
        "limit]=5",
        "]limit=5",
        "+limit=5",
        "%20limit=5",
        "limit%00x=5",
        "lim%69t=5",
        "Offset=5",
        // Spring's default and marker prefixes; Unicode case folding (Go, Java, .NET).
        "!limit=5",
        "_offset=5",
        "%21offset=5",
        "off%C5%BFet=5",
        "l%C4%B1mit=5",
        "L%C4%B0MIT=5",
        // ASP.NET Core and Spring bind a dotted name to an object's property.
        "paging.limit=5",
        "Paging.Offset=5",
        "a.b.limit=5",
        "paging%2Elimit=5",
    ];
    for query in disguises {
        assert!(
            matches!(
                planned(&p, query),
                Err(PlanError::Pagination(PaginationError::Disguised { .. }))
            ),
            "{query}"
        );
    }
    assert_eq!(super::query::folded("%E2%84%AAey"), "key", "Kelvin sign");
    let mut page = policy(false);
    page.limit_param = "per_page".to_owned();
    for query in ["per.page=5", "per page=5", "per[page=5"] {
        assert!(planned(&page, query).is_err(), "{query}");
    }
    for ordinary in [
        "limits=5",
        "limit_by=day",
        "offset_x=1",
        "cursor_id=3",
        "sort[limit]=1",
        "q=a%3Blimit",
        "_=1700000000",
        "!x=1",
    ] {
        assert!(
            planned(&p, ordinary).is_ok(),
            "{ordinary} is an ordinary parameter"
        );
    }
}

#[test]
fn bracketed_names_are_read_as_php_reads_them() {
    // Bracketed names (JSON:API's `page[size]`, Laravel): PHP drops what follows a `]` that
    // no `[` follows, and a longer path makes the name an array.
    let mut json_api = policy(false);
    json_api.limit_param = "page[size]".to_owned();
    json_api.offset = OffsetParam::Offset("page[offset]".to_owned());
    for query in [
        "page[size]x=5",
        "page[size]]=5",
        "page[siz%65]x=5",
        "page[size][]=5",
        "page[size][x]=5",
        "PAGE[size]=5",
        "page[offset]x=5",
        "page[offset]%00=5",
    ] {
        assert!(
            matches!(
                planned(&json_api, query),
                Err(PlanError::Pagination(PaginationError::Disguised { .. }))
            ),
            "{query}"
        );
    }
    for ordinary in ["page[number]=2", "page[sizes]=1", "filter[page][size]=1"] {
        assert!(planned(&json_api, ordinary).is_ok(), "{ordinary}");
    }
    assert_eq!(
        super::query::bracket_paths("a[b]c[d]"),
        ["a[b]"],
        "PHP stops at the text after the first group"
    );
}

#[test]
fn padding_cannot_push_the_limit_past_a_parsers_parameter_cap() {
    let p = policy(false);
    let padding: Vec<String> = (0..1500).map(|i| format!("a{i}=1")).collect();
    let planned = planned(&p, &padding.join("&")).expect("ok");
    assert!(
        planned.query.starts_with("limit=100&a0=1&a1=1&"),
        "the limit leads"
    );
}

#[test]
fn max_items_below_max_limit_bounds_the_page_asked_for() {
    let mut p = policy(false);
    p.max_items = 50;
    let asked = planned(&p, "limit=100&offset=100").expect("clamped");
    assert_eq!(asked.query, "limit=50&offset=100");
    assert_eq!(asked.plan.clamped_from, Some(100));
    // The default is bounded without a clamp: the client asked for nothing.
    let default = planned(&p, "").expect("default");
    assert_eq!(default.query, "limit=50");
    assert_eq!(default.plan.clamped_from, None);
    p.on_violation = OnViolation::Reject;
    assert!(matches!(
        planned(&p, "limit=51"),
        Err(PlanError::Pagination(PaginationError::LimitTooLarge {
            max: 50,
            ..
        }))
    ));
}

#[test]
fn cookies_named_like_paging_parameters_are_dropped() {
    use http::header::COOKIE;
    let p = policy(true);
    let mut headers = http::HeaderMap::new();
    headers.append(
        COOKIE,
        "session=s1; offset=99999999; Limit=100000"
            .parse()
            .expect("value"),
    );
    headers.append(COOKIE, "theme=dark".parse().expect("value"));
    headers.append(COOKIE, "cursor=x; id_gt=5".parse().expect("value"));
    assert_eq!(super::drop_controlled_cookies(&p, &mut headers), 4);
    let left: Vec<_> = headers.get_all(COOKIE).iter().collect();
    assert_eq!(left, ["session=s1", "theme=dark"]);
    // Cookies with other names pass untouched, the header as it came: no framework reads
    // Spring's prefixes or dotted properties from a cookie.
    let mut headers = http::HeaderMap::new();
    let others = "limits=1;offset_x=2; _offset=3; ui.limit=4";
    headers.insert(COOKIE, others.parse().expect("value"));
    assert_eq!(super::drop_controlled_cookies(&p, &mut headers), 0);
    assert_eq!(headers[COOKIE], others);
    // A field with bytes that are not text is still split (PHP splits on `;` whatever the
    // bytes), and bracketed names are read as PHP reads them.
    let mut p = p;
    p.limit_param = "page[size]".to_owned();
    let mut headers = http::HeaderMap::new();
    let value =
        http::HeaderValue::from_bytes(b"offset=99999999; z=\x80; page[size]x=9").expect("value");
    headers.insert(COOKIE, value);
    assert_eq!(super::drop_controlled_cookies(&p, &mut headers), 2);
    assert_eq!(headers[COOKIE].as_bytes(), b"z=\x80");
}
