//! `FileConfig → Config`: every rule of the configuration, with positions for errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::defaults::*;
use super::file::*;

use crate::config::load::backends::{backends, default_policy};
use crate::config::load::cursors::cursors;
use crate::config::load::route::{ReadRoute, overlaps, routes};
use crate::config::{Config, ConfigProblem, Located, Position};
use crate::table::config::PostgresConfig;
use crate::upstream::config::UpstreamConfig;

mod backends;
mod cursors;
mod identities;
mod limits;
mod list;
mod postgres;
mod route;
mod server;
mod table;
mod tls;
mod values;

use values::Problems;

/// Parses YAML text into a validated config, or every problem found.
/// The config, and the warnings about it, unless a problem was found.
/// With `env` false (`check`), a secret's unset variable is no problem: the config lists it in
/// `unset_env` instead.
pub(super) fn parse(text: &str, env: bool) -> Result<(Config, Vec<Located>), Vec<Located>> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        strict_booleans: true,
        with_snippet: false,
    };
    let file: FileConfig = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let at = e.location().map(Position::from);
        vec![Located {
            at,
            problem: ConfigProblem::Syntax(syntax_message(&e, at.and_then(|at| token(text, at)))),
        }]
    })?;
    let mut p = Problems::default();
    if !env {
        p.2 = Some(Vec::new());
    }
    let config = read(&mut p, &file);
    match config {
        Some(mut config) if p.0.is_empty() => {
            config.unset_env = p.2.unwrap_or_default();
            Ok((config, p.1))
        }
        _ => {
            p.0.sort_by_key(|l| l.at.map(|at| (at.line, at.column)));
            Err(p.0)
        }
    }
}

/// The parser's message without its own location suffix (the position is printed in front),
/// made plainer where serde's wording is terse.
fn syntax_message(e: &serde_saphyr::Error, found: Option<&str>) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().trim();
    let message = first.split(" at line ").next().unwrap_or(first).trim();
    let message = message.trim_start_matches("error: ");
    let found = found.unwrap_or("this value");
    if message.starts_with("invalid u64") || message.starts_with("invalid u8") {
        format!(
            "expected a whole number of 0 or more, found `{found}`: write digits only, such as 100"
        )
    } else if message.starts_with("unknown field") {
        format!("{message} (check the spelling; config/reference.yaml lists every key)")
    } else if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        // The parser names its own setting; say what it means for this file.
        let key = rest.split(',').next().unwrap_or(rest).trim();
        format!(
            "`{key}` is written twice in the same mapping: keep one (YAML does not merge \
             them; the second would silently replace the first)"
        )
    } else if message.contains("did not find expected key")
        || message.contains("mapping values are not allowed")
        || message.contains("indentation")
    {
        format!(
            "this line's indentation does not match the lines around it ({message}): indent a \
             key exactly like the other keys of its mapping, with spaces, not tabs"
        )
    } else {
        message.to_owned()
    }
}

/// The scalar written at a position, for error messages.
fn token(text: &str, at: Position) -> Option<&str> {
    let line = text
        .lines()
        .nth(usize::try_from(at.line).ok()?.checked_sub(1)?)?;
    let column = usize::try_from(at.column).ok()?.checked_sub(1)?;
    let rest = line.get(column..)?;
    let end = rest.find([',', ']', '}', '#']).unwrap_or(rest.len());
    Some(rest[..end].trim()).filter(|t| !t.is_empty())
}

/// Upstreams by name.
type Upstreams = BTreeMap<String, Arc<UpstreamConfig>>;

/// Databases by name.
type Databases = BTreeMap<String, Arc<PostgresConfig>>;

/// The typed config of `file`, every problem reported in `p`; `None` when one stopped it.
fn read(p: &mut Problems, file: &FileConfig) -> Option<Config> {
    let server = server::server(p, file);
    let (upstreams, postgres) = backends(p, file);
    let admin = server::admin(p, file, (&upstreams, &postgres));
    let default = default_policy(p, file, &upstreams);
    let redis = file.redis.as_ref().map(|r| limits::redis(p, r));
    let rate_limit_service = file
        .rate_limit_service
        .as_ref()
        .map(|s| limits::rate_limit_service(p, s));
    let stores = limits::Stores {
        redis: redis.is_some(),
        rls: rate_limit_service.is_some(),
    };
    let identities = identities::identities(p, file);
    let default_limits = file
        .default
        .as_ref()
        .and_then(|d| d.value.limits.as_ref())
        .map(|l| {
            let limits = limits::limits(p, l, (stores, &identities));
            route::rows_on_tables(p, l, &limits, None);
            limits
        });
    let cursors = file.cursors.as_ref().and_then(|c| cursors(p, c));
    // A `cursors` block whose keys were refused (an unset variable, a short secret) has its
    // problem reported already; the routes are checked against a stand-in, so that one root
    // cause gives one line, not a second telling to add the block that is there.
    let stand_in = (cursors.is_none() && file.cursors.is_some())
        .then(|| {
            let key = crate::cursor::CursorKey {
                id: 0,
                secret: vec![0; MIN_SECRET_LEN],
            };
            crate::cursor::CursorCodec::new(vec![key], None).map(Arc::new)
        })
        .flatten();
    let codec = cursors.as_ref().map(|c| &c.codec).or(stand_in.as_ref());
    let routes = routes(
        p,
        file,
        (&upstreams, &postgres),
        codec,
        (stores, &identities),
    );
    let table = overlaps(p, file, &routes);
    let (max_held_bytes, max_held_bytes_per_client) = held_budget(p, file, &routes);
    // Every route is there when nothing was reported.
    let routes: Option<Vec<_>> = routes.into_iter().map(|r| r.config).collect();
    table?;
    Some(Config {
        server: server?,
        max_held_bytes,
        max_held_bytes_per_client,
        default,
        default_limits,
        default_allow_read_body: file
            .default
            .as_ref()
            .and_then(|d| d.value.allow_read_body)
            .unwrap_or(false),
        redis,
        rate_limit_service,
        postgres,
        upstreams,
        routes: routes?,
        cursors,
        identities: identities.loaded,
        admin,
        warnings: Vec::new(),
        unset_env: Vec::new(),
        text: Arc::from(""),
    })
}

/// `max_held_bytes` and each client's share of it, checked against the largest list page.
fn held_budget(p: &mut Problems, file: &FileConfig, routes: &[ReadRoute]) -> (u64, u64) {
    let max_held_bytes = p.size(
        file.max_held_bytes.as_ref(),
        "max_held_bytes",
        DEFAULT_MAX_HELD_BYTES,
        (1024, u64::MAX),
        "",
    );
    for (route, r) in routes.iter().zip(&file.routes) {
        let Some(route) = &route.config else { continue };
        if let Some(list) = route.list.as_ref().filter(|l| l.max_bytes > max_held_bytes) {
            let message = format!(
                "of route `{}` ({}) exceeds max_held_bytes ({}): no page of it could ever be held; raise max_held_bytes or lower max_bytes",
                route.name,
                crate::config::yaml_bytes(list.max_bytes),
                crate::config::yaml_bytes(max_held_bytes)
            );
            // At the route's `max_bytes` when written, else (the default) at the route.
            match r
                .value
                .list
                .as_ref()
                .and_then(|l| l.value.max_bytes.as_ref())
            {
                Some(at) => p.invalid(at, "max_bytes", message),
                None => p.invalid(r, "max_bytes", message),
            }
        }
    }
    // A client's share: at least one page of the largest list route, at most the total.
    let largest_page = routes
        .iter()
        .filter_map(|r| r.config.as_ref()?.list.as_ref().map(|l| l.max_bytes))
        .max()
        .unwrap_or(0);
    let max_held_bytes_per_client = match &file.max_held_bytes_per_client {
        None => DEFAULT_MAX_HELD_BYTES_PER_CLIENT
            .max(largest_page)
            .min(max_held_bytes),
        Some(value) => {
            let share = p.size(
                Some(value),
                "max_held_bytes_per_client",
                0,
                (1024, u64::MAX),
                "",
            );
            if share < largest_page || share > max_held_bytes {
                p.invalid(
                    value,
                    "max_held_bytes_per_client",
                    format!(
                        "is {}: it must hold one page of the largest list route ({}, its max_bytes) and be at most max_held_bytes ({})",
                        crate::config::yaml_bytes(share),
                        crate::config::yaml_bytes(largest_page),
                        crate::config::yaml_bytes(max_held_bytes)
                    ),
                );
            }
            share
        }
    };

    (max_held_bytes, max_held_bytes_per_client)
}
