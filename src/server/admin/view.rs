//! `GET /config`: the running config as its file says it, as JSON, with its SHA-256, and no
//! secret in it: cursor secrets and passwords in database, Redis, upstream and collector URLs
//! are redacted, and
//! `*_env` keys show the variable's name, never its value.

use http::StatusCode;

use super::json;
use crate::Response;
use crate::config::Config;
use crate::config::redact::{REDACTED, without_password};

/// Keys whose values are secrets wherever they appear.
const SECRET_KEYS: [&str; 2] = ["secret", "password"];

/// Keys whose values are URLs that may carry a password.
const URL_KEYS: [&str; 4] = ["url", "replica_url", "endpoint", "jwks_url"];

/// Keys whose values are lists of such URLs (`redis.cluster`, `redis.sentinel.urls`).
const URL_LIST_KEYS: [&str; 2] = ["cluster", "urls"];

/// The answer to `GET /config`.
pub(super) fn answer(config: &Config) -> Response {
    // The text validated once already; read again as plain data, only to show it.
    let mut file: serde_json::Value = serde_saphyr::from_str(&config.text).unwrap_or_default();
    redact(&mut file);
    let body = serde_json::json!({"hash": config.hash(), "config": file});
    json(StatusCode::OK, &body)
}

/// Redacts secrets in `value`, at any depth.
pub(super) fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if SECRET_KEYS.contains(&key.as_str()) {
                    *value = serde_json::Value::from(REDACTED);
                } else if URL_KEYS.contains(&key.as_str()) {
                    if let serde_json::Value::String(url) = value {
                        *url = without_password(url);
                    }
                } else if URL_LIST_KEYS.contains(&key.as_str())
                    && let serde_json::Value::Array(urls) = value
                {
                    for url in urls {
                        if let serde_json::Value::String(text) = url {
                            *text = without_password(text);
                        }
                    }
                } else {
                    redact(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
