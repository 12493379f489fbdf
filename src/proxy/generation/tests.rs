//! Building generations: resources reused when their config is unchanged, rebuilt when not.

use http::Method;
use std::sync::Arc;

use super::*;

const YAML: &str = "
listen: 127.0.0.1:0
default: {action: pass, upstream: app}
cursors: {keys: [{id: 1, secret: 0123456789abcdef0123456789abcdef}]}
upstreams:
  app: {url: 'http://127.0.0.1:9'}
  other: {url: 'http://127.0.0.1:10'}
routes:
  - name: events
    path: /events
    methods: [GET]
    upstream: app
    list: {keyset: {keys: [{field: /id, param: id_gt}]}}
  - name: export
    path: /events/export
    upstream: other
    response_timeout: 10m
";

fn config(yaml: &str) -> Config {
    Config::parse("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_second_generation_reuses_unchanged_resources() {
    let metrics = Metrics::default();
    let first = Generation::build(config(YAML), None, &metrics).expect("first");
    let changed = YAML.replace("http://127.0.0.1:10", "http://127.0.0.1:11");
    let second = Generation::build(config(&changed), Some(&first), &metrics).expect("second");
    let client = |g: &Generation, name: &str| Arc::clone(g.upstream(name).expect("upstream"));
    assert!(
        Arc::ptr_eq(&client(&first, "app"), &client(&second, "app")),
        "an unchanged upstream keeps its client and its pooled connections"
    );
    assert!(
        !Arc::ptr_eq(&client(&first, "other"), &client(&second, "other")),
        "a changed upstream gets a new client"
    );
    assert!(Arc::ptr_eq(first.held_budget(), second.held_budget()));
    let codec = |g: &Generation| Arc::clone(&g.config().cursors.as_ref().expect("keys").codec);
    assert_eq!(codec(&first), codec(&second));

    let rekeyed = changed.replace("0123456789abcdef0123456789abcdef", &"k".repeat(32));
    let third = Generation::build(config(&rekeyed), Some(&second), &metrics).expect("third");
    assert_ne!(codec(&second), codec(&third), "new keys, new codec");
    let smaller = format!("max_held_bytes: 64MiB\n{rekeyed}");
    let fourth = Generation::build(config(&smaller), Some(&third), &metrics).expect("fourth");
    assert!(!Arc::ptr_eq(third.held_budget(), fourth.held_budget()));
    assert!(Arc::ptr_eq(&client(&first, "app"), &client(&fourth, "app")));
}

#[tokio::test]
async fn routes_and_the_default_policy_are_services_of_the_generation() {
    let metrics = Metrics::default();
    let generation = Generation::build(config(YAML), None, &metrics).expect("built");
    let name = |method: Method, path: &str| {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .body(crate::body::full(bytes::Bytes::new()))
            .expect("request");
        generation.route(&req).0.name().to_owned()
    };
    assert_eq!(name(Method::GET, "/events"), "events");
    assert_eq!(name(Method::HEAD, "/Events/"), "events");
    assert_eq!(name(Method::POST, "/events"), DEFAULT_ROUTE_NAME);
    assert_eq!(name(Method::GET, "/events/export"), "export");
    assert_eq!(name(Method::GET, "/elsewhere"), DEFAULT_ROUTE_NAME);
    let lower = Method::from_bytes(b"get").expect("method");
    assert_eq!(
        name(lower.clone(), "/events"),
        REFUSED_ROUTE_NAME,
        "a list path"
    );
    assert_eq!(
        name(lower, "/elsewhere"),
        DEFAULT_ROUTE_NAME,
        "not a list path"
    );
    assert_eq!(name(Method::CONNECT, "/elsewhere"), REFUSED_ROUTE_NAME);
}
