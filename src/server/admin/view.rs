//! `GET /config`: the running config as its file says it, as JSON, with its SHA-256, and no
//! secret in it: cursor secrets and passwords in database and Redis URLs are redacted, and
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
const URL_KEYS: [&str; 2] = ["url", "replica_url"];

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
/// one unchanged.
fn without_password(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = base.to_owned();
    if let Some((scheme, rest)) = base.split_once("://") {
        // The userinfo ends at the last `@` before the path.
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@')
            && let Some((user, _)) = rest[..at].split_once(':')
        {
            out = format!("{scheme}://{user}:{REDACTED}{}", &rest[at..]);
        }
    }
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                    format!("{key}={REDACTED}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests;
