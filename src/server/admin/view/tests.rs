use super::*;

#[test]
fn passwords_in_urls_are_redacted_and_the_rest_kept() {
    for (url, shown) in [
        (
            "postgres://app:s3cret@db:5432/app",
            "postgres://app:[redacted]@db:5432/app",
        ),
        (
            "postgres://app:p@ss@db/app?sslmode=require",
            "postgres://app:[redacted]@db/app?sslmode=require",
        ),
        (
            "postgres://db/app?user=app&password=s3cret&sslmode=require",
            "postgres://db/app?user=app&password=[redacted]&sslmode=require",
        ),
        (
            "redis://:hunter2@redis:6379/0",
            "redis://:[redacted]@redis:6379/0",
        ),
        ("postgres://app@db/app", "postgres://app@db/app"),
        (
            "postgres://${PGUSER}:${PGPASSWORD}@db/app",
            "postgres://${PGUSER}:[redacted]@db/app",
        ),
        ("http://127.0.0.1:3000/api", "http://127.0.0.1:3000/api"),
        // Unescaped `/`, `?` and `#` in a password, as tokio-postgres reads them.
        (
            "postgres://app:pa/ss?w#rd@db/app",
            "postgres://app:[redacted]@db/app",
        ),
        (
            "redis://u:a?password=b@r:6379",
            "redis://u:[redacted]@r:6379",
        ),
        (
            "http://collector:tok3n@otel:4318/v1/traces",
            "http://collector:[redacted]@otel:4318/v1/traces",
        ),
        ("host=db user=app password='a b'", "[redacted]"),
        ("host=db user=app", "host=db user=app"),
    ] {
        assert_eq!(without_password(url), shown, "{url}");
    }
}

#[test]
fn secrets_are_redacted_at_any_depth_and_env_names_kept() {
    let mut file = serde_json::json!({
        "cursors": {"keys": [{"id": 1, "secret": "0123456789abcdef0123456789abcdef"},
                             {"id": 2, "secret_env": "PAGEGATE_CURSOR_SECRET"}]},
        "postgres": {"main": {"url": "postgres://u:pw@db/app", "replica_url": "postgres://u:pw@r/app"}},
        "redis": {"url": "redis://:pw@r:6379", "cluster": ["redis://u:pw@c1:7000"],
                  "sentinel": {"master": "m", "urls": ["redis://:pw@s1:26379"]}},
        "traces": {"endpoint": "https://u:pw@otel/v1/traces"},
        "routes": [{"path": "/events", "upstream": "app"}],
    });
    redact(&mut file);
    let text = file.to_string();
    assert!(!text.contains("0123456789abcdef"), "{text}");
    assert!(!text.contains(":pw@"), "{text}");
    assert!(text.contains("PAGEGATE_CURSOR_SECRET"), "{text}");
    assert!(text.contains("/events"), "{text}");
    assert_eq!(file["cursors"]["keys"][0]["secret"], REDACTED);
}

#[test]
fn an_identity_keys_url_shows_no_password() {
    let mut file = serde_json::json!({
        "identities": {"api": {
            "jwks_url": "https://reader:k3ys@idp.example/.well-known/jwks.json",
            "issuer": "https://idp.example/",
        }},
    });
    redact(&mut file);
    assert_eq!(
        file["identities"]["api"]["jwks_url"],
        "https://reader:[redacted]@idp.example/.well-known/jwks.json"
    );
    assert_eq!(file["identities"]["api"]["issuer"], "https://idp.example/");
}
