//! The cursor signing keys (`cursors`): secrets read from the environment, their lifetime.

use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::values::Problems;
use crate::config::defaults::*;
use crate::config::file::*;
use crate::config::*;
use crate::cursor::{CursorCodec, CursorKey};

/// Why key `id`'s `secret` cannot sign cursors, if it cannot.
fn weak(id: u8, secret: &str) -> Option<String> {
    // The examples' stand-ins: long enough, and public.
    if secret.contains("replace-me") || secret.contains("replace-with") {
        return Some(format!(
            "of key {id} is the examples' placeholder, which anyone can read: put \
             `openssl rand -base64 48`'s output there instead"
        ));
    }
    (secret.len() < MIN_SECRET_LEN).then(|| {
        format!(
            "of key {id} is {} bytes: use at least {MIN_SECRET_LEN} random bytes, e.g. `openssl rand -base64 48`",
            secret.len()
        )
    })
}

pub(super) fn cursors(p: &mut Problems, c: &Spanned<FileCursors>) -> Option<CursorSettings> {
    let mut keys = Vec::new();
    for k in &c.value.keys.value {
        let Ok(id) = u8::try_from(k.value.id.value.0) else {
            p.invalid(
                &k.value.id,
                "id",
                format!("is {}: key ids are 0 to 255", k.value.id.value.0),
            );
            continue;
        };
        if keys.iter().any(|existing: &CursorKey| existing.id == id) {
            p.invalid(
                &k.value.id,
                "id",
                format!("{id} is used twice: give every key its own id"),
            );
            continue;
        }
        let secret = match (&k.value.secret, &k.value.secret_env) {
            (Some(s), None) => s.value.clone(),
            (None, Some(var)) => match std::env::var(&var.value) {
                Ok(s) => s,
                // `check` without the environment: noted, and a stand-in validates the rest.
                Err(_) if p.2.is_some() => {
                    p.2.get_or_insert_default().push(var.value.clone());
                    "-".repeat(MIN_SECRET_LEN)
                }
                Err(_) => {
                    p.invalid(
                        var,
                        "secret_env",
                        format!("names ${}, which is not set: export it (at least {MIN_SECRET_LEN} random bytes)", var.value),
                    );
                    continue;
                }
            },
            _ => {
                p.invalid(
                    k,
                    "keys",
                    "each key needs exactly one of `secret` or `secret_env`".to_owned(),
                );
                continue;
            }
        };
        if let Some(reason) = weak(id, &secret) {
            p.invalid(k, "secret", reason);
            continue;
        }
        keys.push(CursorKey {
            id,
            secret: secret.into_bytes(),
        });
    }
    if c.value.keys.value.is_empty() {
        p.invalid(
            &c.value.keys,
            "keys",
            "is empty: declare at least one signing key".to_owned(),
        );
    }
    let ttl = c
        .value
        .ttl
        .as_ref()
        .map(|t| p.duration(Some(t), "ttl", Duration::from_secs(86_400)));
    if keys.is_empty() {
        return None;
    }
    // Ids are unique and keys non-empty (checked above), so a codec can be built from them.
    let codec = Arc::new(CursorCodec::new(keys.clone(), ttl)?);
    Some(CursorSettings { keys, ttl, codec })
}
