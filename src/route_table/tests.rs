use std::borrow::Cow;

use http::Method;

use super::normal::decode_unreserved;
use super::*;

fn route(name: &'static str, path: &str, methods: Option<&[Method]>) -> RouteSpec<&'static str> {
    RouteSpec {
        path: path.to_owned(),
        methods: methods.map(<[Method]>::to_vec),
        list: name == "list" || name == "plain-list",
        // A route named `plain-…` has a backend that reads no format suffixes.
        suffixes: !name.starts_with("plain"),
        value: name,
    }
}

#[test]
fn matches_exact_param_and_catch_all_paths_by_method() {
    let routes = [
        route("list", "/events", Some(&[Method::GET])),
        route("create", "/events", Some(&[Method::POST])),
        route("one", "/users/{id}/events", None),
        route("files", "/files/{*rest}", None),
    ];
    let table = RouteTable::new(&routes);
    let name = |m: Method, p: &str| table.find(&m, p).map(|r| (*r).to_owned());
    assert_eq!(name(Method::GET, "/events").as_deref(), Some("list"));
    assert_eq!(name(Method::POST, "/events").as_deref(), Some("create"));
    assert_eq!(name(Method::DELETE, "/events"), None);
    assert_eq!(
        name(Method::HEAD, "/events").as_deref(),
        Some("list"),
        "HEAD goes where GET goes"
    );
    assert_eq!(name(Method::GET, "/users/7/events").as_deref(), Some("one"));
    assert_eq!(
        name(Method::GET, "/files/a/b/c.csv").as_deref(),
        Some("files")
    );
    for variant in [
        "/events/",
        "/Events",
        "/EVENTS",
        "//events",
        "/events;jsessionid=1",
        "/x/../events",
        "/x/%2e%2e/events",
        "/./events",
        "/events.json",
        "/v%2F..%2Fevents",
        "/x\\..\\events",
        "/events%2F",
        "/x%2%66..%2%66events",
        "/x%2%46..%5%63events",
    ] {
        assert_eq!(
            name(Method::GET, variant).as_deref(),
            Some("list"),
            "{variant} must not dodge the list route"
        );
    }
    assert_eq!(name(Method::GET, "/events/x"), None);
    assert_eq!(
        name(Method::GET, "/%65vents").as_deref(),
        Some("list"),
        "unreserved escapes are decoded"
    );
    assert_eq!(
        name(Method::GET, "/users/a%2Fb/events").as_deref(),
        Some("one"),
        "%2F stays one segment"
    );
}

#[test]
fn overlaps_are_reported_with_both_routes() {
    let same = [
        route("a", "/e", None),
        route("b", "/e", Some(&[Method::GET])),
    ];
    assert_eq!(RouteTable::overlap(&same), Some((1, 0)));
    let params = [route("a", "/u/{id}", None), route("b", "/u/{name}", None)];
    assert_eq!(RouteTable::overlap(&params), Some((1, 0)));
    let head = [
        route("h", "/e", Some(&[Method::HEAD])),
        route("g", "/e", Some(&[Method::GET])),
    ];
    assert_eq!(
        RouteTable::overlap(&head),
        Some((1, 0)),
        "HEAD is served by a GET route"
    );
    let case = [route("a", "/Events", None), route("b", "/events/", None)];
    assert_eq!(
        RouteTable::overlap(&case),
        Some((1, 0)),
        "variants of one path overlap"
    );
    let disjoint = [
        route("a", "/e", Some(&[Method::GET])),
        route("b", "/e", Some(&[Method::POST, Method::PUT])),
    ];
    assert_eq!(RouteTable::overlap(&disjoint), None);
    // Built all the same, the first of two overlapping routes wins.
    assert_eq!(RouteTable::new(&same).find(&Method::GET, "/e"), Some(&"a"));
    assert_eq!(
        RouteTable::new(&params).find(&Method::GET, "/u/1"),
        Some(&"a")
    );
}

#[test]
fn list_paths_are_known_whatever_the_method() {
    let routes = [
        route("list", "/events", Some(&[Method::GET])),
        route("create", "/events", Some(&[Method::POST])),
        route("files", "/files/{*rest}", None),
    ];
    let table = RouteTable::new(&routes);
    for (method, path, route, list_path) in [
        (Method::GET, "/events", Some("list"), true),
        (Method::POST, "/events", Some("create"), true),
        (Method::DELETE, "/events", None, true),
        (
            Method::from_bytes(b"get").expect("method"),
            "/Events/",
            None,
            true,
        ),
        (Method::PUT, "/v%2F..%2Fevents", None, true),
        (Method::GET, "/events.csv", Some("list"), true),
        (Method::GET, "/files/a", Some("files"), false),
        (Method::GET, "/nothing", None, false),
    ] {
        let found = table.lookup(&method, path);
        assert_eq!(found.route.copied(), route, "{method} {path}");
        assert_eq!(found.list_path, list_path, "{method} {path}");
    }
}

#[test]
fn normal_paths_are_matched_without_a_copy() {
    for path in [
        "/",
        "/events",
        "/users/7/events",
        "/events.json",
        "/a-b_c~d",
    ] {
        assert!(
            matches!(normalize(path, Separators::Backslash), Cow::Borrowed(_)),
            "{path}"
        );
    }
    for path in [
        "/Events",
        "/events/",
        "//events",
        "/./events",
        "/x/../e",
        "/e;x",
        "/%65",
        "/a\\b",
        "/events.",
    ] {
        assert!(
            matches!(normalize(path, Separators::Backslash), Cow::Owned(_)),
            "{path}"
        );
    }
}

#[test]
fn what_windows_and_iis_read_as_a_path_is_that_path() {
    for path in [
        "/events.",
        "/events..",
        "/events%2e",
        "/events%2E",
        "/events%20",
        "/events.%20.",
        "/events%3B",
        "/events%3bjsessionid=1",
        "/events;x",
        "/Events./",
    ] {
        assert_eq!(normalize(path, Separators::Backslash), "/events", "{path}");
    }
    // Dot segments keep their meaning.
    assert_eq!(normalize("/a/../events", Separators::Backslash), "/events");
    assert_eq!(normalize("/a/./events", Separators::Backslash), "/a/events");
    assert!(nul("/events%00"));
    assert!(!nul("/events%200"));
}

#[test]
fn decoding_keeps_reserved_escapes_and_bad_sequences() {
    assert_eq!(decode_unreserved("/a%41%7e%2f%zz%4"), "/aA~%2f%zz%4");
}

#[test]
fn a_list_route_found_by_any_reading_wins_over_a_catch_all() {
    let routes = [
        route("list", "/events", Some(&[Method::GET])),
        route("files", "/{*rest}", None),
    ];
    let table = RouteTable::new(&routes);
    for path in [
        "/events",
        "/events.json",
        "/Events.JSON",
        "/events%2F",
        "/x%2F..%2Fevents",
    ] {
        let found = table.lookup(&Method::GET, path);
        assert_eq!(found.route.copied(), Some("list"), "{path}");
        assert!(found.list_path, "{path}");
    }
    let other = table.lookup(&Method::GET, "/other.json");
    assert_eq!(other.route.copied(), Some("files"));
    assert!(!other.list_path);
    // Another method on the list path goes to the catch-all, but the path is known as a list
    // path (the method checks apply to it).
    let post = table.lookup(&Method::POST, "/events.json");
    assert_eq!(post.route.copied(), Some("files"));
    assert!(post.list_path);
}

#[test]
fn a_route_found_by_any_reading_wins_over_a_catch_all() {
    let routes = [
        route("login", "/login", Some(&[Method::POST])),
        route("user", "/users/{id}", None),
        route("report.csv", "/report.csv", None),
        route("report", "/report", None),
        route("files", "/{*rest}", None),
    ];
    let table = RouteTable::new(&routes);
    for (path, expected) in [
        ("/login", "login"),
        ("/login.json", "login"),
        ("/login%2F", "login"),
        ("/users/7.json", "user"),
        // Two routes that are not catch-alls: the path as written wins.
        ("/report.csv", "report.csv"),
        ("/report.json", "report"),
        ("/login.json/x", "files"),
    ] {
        let found = table.lookup(&Method::POST, path);
        assert_eq!(found.route.copied(), Some(expected), "{path}");
    }
    // A method the route does not serve still goes to the catch-all.
    let get = table.lookup(&Method::GET, "/login.json");
    assert_eq!(get.route.copied(), Some("files"));
}

#[test]
fn a_route_found_with_no_parameter_wins_over_one_that_took_one() {
    let routes = [
        route("slug", "/{slug}", None),
        route("login", "/login", None),
        route("user", "/users/{id}", None),
    ];
    let table = RouteTable::new(&routes);
    for (path, expected) in [
        ("/login", "login"),
        ("/login.json", "login"),
        ("/login%2F", "login"),
        ("/about.json", "slug"),
        // Both readings took a parameter: the path as written wins.
        ("/users/7.json", "user"),
    ] {
        let found = table.lookup(&Method::POST, path);
        assert_eq!(found.route.copied(), Some(expected), "{path}");
    }
}

#[test]
fn a_backend_without_format_suffixes_keeps_its_extensions() {
    let routes = [
        route("plain-health", "/health", None),
        route("plain-list", "/feed", Some(&[Method::GET])),
        route("list", "/events", Some(&[Method::GET])),
        route("files", "/{*rest}", None),
    ];
    let table = RouteTable::new(&routes);
    for (path, expected, list_path) in [
        ("/health", "plain-health", false),
        // Such a backend serves `/health.x` as a path of its own: the catch-all's.
        ("/health.x", "files", false),
        ("/feed", "plain-list", true),
        ("/feed.json", "files", false),
        ("/feed%2Ejson", "files", false),
        ("/Feed/", "plain-list", true),
        // Another route's backend still reads them.
        ("/events.json", "list", true),
        ("/events%2Ejson", "list", true),
    ] {
        let found = table.lookup(&Method::GET, path);
        assert_eq!(found.route.copied(), Some(expected), "{path}");
        assert_eq!(found.list_path, list_path, "{path}");
        assert!(found.routed_path, "{path}");
    }
}

#[test]
fn a_percent_2f_that_picks_between_two_routes_is_ambiguous() {
    let routes = [
        route("list", "/orgs/{org}/events", Some(&[Method::GET])),
        route("org", "/orgs/{org}", None),
        route("files", "/files/{*rest}", None),
        route("login", "/login", None),
        route("export", "/orgs/{org}/export/{*rest}", None),
        route("rest", "/{*rest}", None),
    ];
    let table = RouteTable::new(&routes);
    let found = |p: &str| table.lookup(&Method::GET, p);
    // Express reads `/orgs/{org}` with org `x/events`; Django and Starlette the list route.
    for path in [
        "/orgs/x%2Fevents",
        "/orgs/x%5cevents",
        "/orgs/x\\events",
        // Rails: `orgs#show` with format json; a suffix reader of the slashed path: the list.
        "/orgs/x%2Fevents.json",
        // A catch-all below the root guards a subtree, not "everything else".
        "/orgs/acme%2Fexport%2Fall",
    ] {
        assert!(found(path).ambiguous, "{path}");
    }
    // Express and Go read a `\` as a character: the route that reading finds is considered.
    assert_eq!(found("/orgs/a\\b").route, Some(&"org"));
    // One reading finds no route, or a catch-all: the other wins, as over `default`.
    for path in [
        "/orgs/a%2Fb%2Fc",
        "/orgs/a%2Fb",
        "/files/a%2Fb",
        "/login%2F",
        "/orgs/x/events",
        "/elsewhere%2Fx",
    ] {
        assert!(!found(path).ambiguous, "{path}");
    }
    assert_eq!(
        found("/login%2F").route,
        Some(&"login"),
        "over `/{{*rest}}`"
    );
    assert_eq!(found("/orgs/a%2Fb").route, Some(&"org"));
}

#[test]
fn every_backends_reading_of_an_odd_path_is_weighed() {
    let routes = [
        route("list", "/orgs/{org}/events", Some(&[Method::GET])),
        route("org", "/orgs/{org}", None),
        route("help", "/search/help", None),
        route("search", "/search/{q}", None),
        route("feed", "/teams/{team}/{feed}", None),
        route("team", "/teams/{team}", None),
        route("cafe", "/caf%C3%A9", None),
    ];
    let table = RouteTable::new(&routes);
    let found = |p: &str| table.lookup(&Method::GET, p);
    for path in [
        // WSGI and ASGI decode `%2F` but keep `\` (and `%5C`) in the segment: the list route;
        // Express keeps both: `/orgs/{org}`.
        "/orgs/a%5Cb%2Fevents",
        "/orgs/a\\b%2Fevents",
        // Django, Rails and Go match case, `;params` and trailing dots and spaces exactly:
        // `/search/{q}`; pagegate's loose reading: `/search/help`.
        "/search/HELP",
        "/search/help.",
        "/search/help;x",
        "/search/help%20",
        // A last `;param` segment is served, and is `{feed}` to those backends.
        "/teams/acme/;x",
    ] {
        assert!(found(path).ambiguous, "{path}");
    }
    // A path in normal form, or whose readings agree, is not.
    for path in ["/search/help", "/search/Rust", "/orgs/A"] {
        assert!(!found(path).ambiguous, "{path}");
    }
    // A raw UTF-8 path (HTTP/1 servers take one) is its escaped spelling.
    assert_eq!(found("/café").route, Some(&"cafe"));
    assert_eq!(found("/caf%c3%a9").route, Some(&"cafe"));
    assert_eq!(decode_unreserved("/caf\u{e9}%41"), "/caf%c3%a9A");
}

#[test]
fn the_exact_reading_keeps_what_the_loose_one_grants() {
    let routes = [
        route("list", "/orgs/{org}/events", Some(&[Method::GET])),
        route("rest", "/orgs/{org}/{*rest}", None),
        route("events", "/api/events", None),
        route("api", "/api/{*rest}", None),
        route("reports", "/Reports", None),
        route("slug", "/{slug}", None),
    ];
    let table = RouteTable::new(&routes);
    let found = |p: &str| table.lookup(&Method::GET, p);
    // A format suffix reads as the route without it in the exact reading too.
    for path in ["/orgs/Acme/events.json", "/orgs/a+b/events.json"] {
        assert!(!found(path).ambiguous, "{path}");
        assert_eq!(found(path).route, Some(&"list"), "{path}");
    }
    // Empty segments bind no `{param}`, nor move a path under a catch-all.
    for path in ["/api/events/", "/api/events//", "/api//events"] {
        assert!(!found(path).ambiguous, "{path}");
        assert_eq!(found(path).route, Some(&"events"), "{path}");
    }
    // A route written with capitals, asked for as written.
    assert!(!found("/Reports").ambiguous);
    assert_eq!(found("/Reports").route, Some(&"reports"));
}
