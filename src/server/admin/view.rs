//! `GET /config`: the running config as its file says it, as JSON, with its SHA-256, and no
//! secret in it: cursor secrets and passwords in database, Redis, upstream and collector URLs
//! are redacted, and
//! `*_env` keys show the variable's name, never its value.

use http::StatusCode;

use super::json;
use crate::Response;
use crate::config::Config;

/// What stands where a secret was.
const REDACTED: &str = "[redacted]";

/// Keys whose values are secrets wherever they appear.
const SECRET_KEYS: [&str; 2] = ["secret", "password"];

/// Keys whose values are URLs that may carry a password.
const URL_KEYS: [&str; 3] = ["url", "replica_url", "endpoint"];

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

/// `scheme://user:password@host…?password=…` with the passwords redacted; a URL without
/// one unchanged. A key=value connection string that names a password is redacted whole.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.to_ascii_lowercase().contains("password") {
            REDACTED.to_owned()
        } else {
            url.to_owned()
        };
    };
    // Clients disagree on where the userinfo ends: tokio-postgres takes the first `@`, the url
    // crate the last one before the path, and a password may hold `/`, `?` or `@`. So all up
    // to the last `@` is taken as userinfo: at worst too much is redacted, never too little.
    let mut out = format!("{scheme}://");
    let tail = match rest.rfind('@') {
        Some(at) => {
            let info = &rest[..at];
            match info.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:{REDACTED}")),
                None => out.push_str(info),
            }
            &rest[at..]
        }
        None => rest,
    };
    let Some((base, query)) = tail.split_once('?') else {
        out.push_str(tail);
        return out;
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                format!("{key}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    out.push_str(base);
    out.push('?');
    out.push_str(&pairs.join("&"));
    out
}

#[cfg(test)]
mod tests;
