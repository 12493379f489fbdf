//! The routes (`routes`): each route's target, methods, list policy, timeouts and limits;
//! duplicate names and overlapping paths are reported where they are written.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Method;

use super::values::Problems;
use crate::config::defaults::*;
use crate::config::file::*;
use crate::config::load::Databases;
use crate::config::load::backends::known_upstreams;
use crate::config::*;
use crate::route_table::{RouteSpec, RouteTable};

/// The routes in file order, each checked; a duplicate name is reported where it repeats.
pub(super) fn routes(
    p: &mut Problems,
    file: &FileConfig,
    postgres: &Databases,
    cursors: bool,
    redis: bool,
) -> Vec<Arc<RouteConfig>> {
    let declared = |name: &str| {
        file.upstreams
            .as_ref()
            .is_some_and(|u| u.value.contains_key(name))
    };
    let known = known_upstreams(file);
    let mut routes = Vec::new();
    let mut names = BTreeMap::new();
    for r in &file.routes {
        let name = r
            .value
            .name
            .as_ref()
            .map_or_else(|| default_name(&r.value), |n| n.value.clone());
        if let Some(previous) = names.insert(name.clone(), r) {
            let at = r.value.name.as_ref().map_or(r.referenced, |n| n.referenced);
            p.0.push(Located {
                at: Some(at.into()),
                problem: ConfigProblem::Invalid {
                    key: "name",
                    reason: format!(
                        "`{name}` is already used by the route at line {}: route names must be unique",
                        previous.referenced.line()
                    ),
                },
            });
        }
        let target = match (&r.value.upstream, &r.value.table) {
            (Some(upstream), None) => {
                if !declared(&upstream.value) {
                    let problem = ConfigProblem::UnknownUpstream {
                        route: name.clone(),
                        name: upstream.value.clone(),
                        known: known.clone(),
                    };
                    p.push(upstream, problem);
                }
                Target::Upstream(upstream.value.clone())
            }
            (None, Some(t)) => match super::table::table(p, t, postgres) {
                Some(t) => Target::Table(Arc::new(t)),
                None => Target::Upstream(String::new()),
            },
            (Some(upstream), Some(_)) => {
                p.invalid(upstream, "upstream", "and `table` are both set: a route answers from an HTTP upstream or from a table, not both".to_owned());
                Target::Upstream(upstream.value.clone())
            }
            (None, None) => {
                p.invalid(
                    &r.value.path,
                    "path",
                    "names a route with neither `upstream` nor `table`: add one".to_owned(),
                );
                Target::Upstream(String::new())
            }
        };
        if let (Target::Table(_), Some(list)) = (&target, &r.value.list) {
            p.invalid(list, "list", "is for upstream routes: a table route pages by its `key` (set default_limit and max_limit under `table`)".to_owned());
        }
        routes.push(Arc::new(route(p, name, &r.value, target, cursors, redis)));
    }
    routes
}

/// `Some(())` when no two routes overlap; the route table itself is built with the generation.
pub(super) fn overlaps(
    p: &mut Problems,
    file: &FileConfig,
    routes: &[Arc<RouteConfig>],
) -> Option<()> {
    // The table itself is built with the generation; here it only finds overlaps.
    let specs: Vec<RouteSpec<usize>> = routes
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.specs(i))
        .collect();
    match RouteTable::new(&specs) {
        Ok(_) => Some(()),
        Err((later, earlier)) => {
            let (later, earlier) = (specs[later].value, specs[earlier].value);
            let problem = ConfigProblem::Overlap {
                route: routes[later].name.clone(),
                path: routes[later].path.clone(),
                other: routes[earlier].name.clone(),
            };
            p.push(&file.routes[later].value.path, problem);
            None
        }
    }
}

/// A route without `name` is named by its methods and path: `GET /events`.
pub(super) fn default_name(r: &FileRoute) -> String {
    match &r.methods {
        Some(methods) => {
            let list: Vec<&str> = methods.value.iter().map(|m| m.value.as_str()).collect();
            format!("{} {}", list.join(","), r.path.value)
        }
        None => r.path.value.clone(),
    }
}

pub(super) fn route(
    p: &mut Problems,
    name: String,
    r: &FileRoute,
    target: Target,
    has_cursors: bool,
    has_redis: bool,
) -> RouteConfig {
    if let (Target::Table(_), Some(t)) = (&target, &r.table)
        && !has_cursors
    {
        p.invalid(
            t,
            "table",
            "needs `cursors` keys: a table route's pages carry signed cursors".to_owned(),
        );
    }
    if matches!(target, Target::Table(_)) && r.path.value.contains('{') {
        p.invalid(
            &r.path,
            "path",
            format!(
                "is {:?}: a table route's path is fixed (it also serves <path>/export)",
                r.path.value
            ),
        );
    }
    if !r.path.value.starts_with('/') {
        p.invalid(
            &r.path,
            "path",
            format!("is {:?}: a path starts with `/`", r.path.value),
        );
    }
    if !r.path.value.is_ascii() {
        let encoded: String = r
            .path
            .value
            .bytes()
            .map(|b| {
                if b.is_ascii() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        p.invalid(
            &r.path,
            "path",
            format!(
                "is {:?}: clients send non-ASCII characters percent-encoded; write {encoded}",
                r.path.value
            ),
        );
    }
    let methods = r.methods.as_ref().map(|list| {
        if list.value.is_empty() {
            p.invalid(
                list,
                "methods",
                "is empty: remove it to match every method".to_owned(),
            );
        }
        list.value
            .iter()
            .filter_map(|m| {
                let ok = !m.value.is_empty() && m.value.bytes().all(|b| b.is_ascii_uppercase());
                let method = Method::from_bytes(m.value.as_bytes()).ok().filter(|_| ok);
                if method.is_none() {
                    p.invalid(
                        m,
                        "methods",
                        format!(
                            "contains {:?}: write methods in capitals, e.g. GET",
                            m.value
                        ),
                    );
                }
                method
            })
            .collect()
    });
    let list = r
        .list
        .as_ref()
        .map(|l| super::list::list(p, &name, l, has_cursors));
    if let (Some(l), Some(methods)) = (&r.list, &r.methods)
        && !methods.value.iter().any(|m| m.value == "GET")
    {
        p.invalid(
            l,
            "list",
            "applies to GET (and HEAD) requests, but this route's `methods` has no GET: add GET or remove `list`".to_owned(),
        );
    }
    RouteConfig {
        name,
        path: r.path.value.clone(),
        methods,
        target,
        list,
        timeouts: TimeoutOverrides {
            response: r
                .response_timeout
                .as_ref()
                .map(|t| p.duration(Some(t), "response_timeout", DEFAULT_RESPONSE_TIMEOUT)),
            idle: r
                .idle_timeout
                .as_ref()
                .map(|t| p.duration(Some(t), "idle_timeout", DEFAULT_IDLE_TIMEOUT)),
        },
        limits: r
            .limits
            .as_ref()
            .map(|l| super::limits::limits(p, l, has_redis)),
        allow_read_body: r.allow_read_body.unwrap_or(false),
    }
}
