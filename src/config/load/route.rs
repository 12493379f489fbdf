//! The routes (`routes`): each route's target, methods, list policy, timeouts and limits;
//! duplicate names and overlapping paths are reported where they are written.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::values::Problems;
use crate::config::defaults::*;
use crate::config::file::*;
use crate::config::load::backends::known_upstreams;
use crate::config::load::identities::Identities;
use crate::config::load::{Databases, Upstreams};
use crate::config::*;
use crate::cursor::CursorCodec;
use crate::limit::config::{OnExceed, QuotaUnit};
use crate::route_table::{RouteSpec, RouteTable};
use crate::table::config::ScopeSource;
use serde_saphyr::Spanned;

mod path;
use path::{check_path, methods};

/// A route as read from the file: its name and table entries, and its config unless a problem
/// was reported, so the checks that look at all routes still see every one, at its line.
pub(super) struct ReadRoute {
    name: String,
    specs: Vec<RouteSpec<usize>>,
    pub(super) config: Option<Arc<RouteConfig>>,
}

/// Why a route may not be named `name`: `-` and names starting with `!` are pagegate's own
/// (the `default` policy's requests and refusals are logged and counted under them), and an
/// empty name or one with control characters would be unreadable in logs and metrics. A name
/// is a Redis Cluster hash tag in the shared limits' keys (`{name}`): one that starts with `}`
/// would make it `{}`, no tag, and spread a route's keys over the cluster.
fn reserved(name: &str) -> Option<String> {
    if name.starts_with('}') {
        return Some(format!(
            "is {name:?}: a name that starts with `}}` cannot tag the route's keys for a Redis \
             Cluster; start it with another character"
        ));
    }
    if name == "-" || name.starts_with('!') {
        return Some(format!(
            "is {name:?}: `-` and names starting with `!` are pagegate's own (the default \
             policy's requests are logged under them); choose another name"
        ));
    }
    (name.trim().is_empty() || name.chars().any(char::is_control))
        .then(|| format!("is {name:?}: write a name of visible characters"))
}

/// The routes in file order, each checked; a duplicate name is reported where it repeats.
pub(super) fn routes(
    p: &mut Problems,
    file: &FileConfig,
    (upstreams, postgres): (&Upstreams, &Databases),
    cursors: Option<&Arc<CursorCodec>>,
    (redis, identities): (super::limits::Stores, &Identities),
) -> Vec<ReadRoute> {
    let mut routes = Vec::new();
    let mut names = BTreeMap::new();
    for (i, r) in file.routes.iter().enumerate() {
        let name = r
            .value
            .name
            .as_ref()
            .map_or_else(|| default_name(&r.value), |n| n.value.clone());
        if let Some(reason) = reserved(&name) {
            let at = r.value.name.as_ref().map_or(r.referenced, |n| n.referenced);
            p.0.push(Located {
                at: Some(at.into()),
                problem: ConfigProblem::Invalid {
                    key: "name",
                    reason,
                },
            });
        }
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
        if let (Some(_), Some(list)) = (&r.value.table, &r.value.list) {
            p.invalid(list, "list", "is for upstream routes: a table route pages by its `key` (set default_limit and max_limit under `table`)".to_owned());
        }
        let target = target(
            p,
            (file, &name, &r.value),
            (upstreams, postgres),
            (cursors, identities),
        );
        routes.push(route(
            p,
            (i, name),
            &r.value,
            target,
            (cursors, redis, identities),
        ));
    }
    routes
}

/// Where a route's answers come from, resolved to the upstream's or table's settings.
fn target(
    p: &mut Problems,
    (file, name, r): (&FileConfig, &str, &FileRoute),
    (upstreams, postgres): (&Upstreams, &Databases),
    (cursors, identities): (Option<&Arc<CursorCodec>>, &Identities),
) -> Option<Target> {
    match (&r.upstream, &r.table) {
        (Some(upstream), None) => {
            let declared = file
                .upstreams
                .as_ref()
                .is_some_and(|u| u.value.contains_key(&upstream.value));
            if !declared {
                let problem = ConfigProblem::UnknownUpstream {
                    route: name.to_owned(),
                    name: upstream.value.clone(),
                    known: known_upstreams(file),
                };
                p.push(upstream, problem);
            }
            // A declared upstream missing here had settings of its own reported wrong.
            upstreams
                .get(&upstream.value)
                .cloned()
                .map(Target::Upstream)
        }
        (None, Some(t)) => {
            let table = super::table::table(p, t, postgres, (cursors, identities));
            table.map(|t| Target::Table(Arc::new(t)))
        }
        (Some(upstream), Some(_)) => {
            p.invalid(upstream, "upstream", "and `table` are both set: a route answers from an HTTP upstream or from a table, not both".to_owned());
            None
        }
        (None, None) => {
            p.invalid(
                &r.path,
                "path",
                "names a route with neither `upstream` nor `table`: add one".to_owned(),
            );
            None
        }
    }
}

/// `Some(())` when no two routes overlap; the route table itself is built with the generation,
/// which trusts this check.
pub(super) fn overlaps(p: &mut Problems, file: &FileConfig, routes: &[ReadRoute]) -> Option<()> {
    let specs: Vec<RouteSpec<usize>> = routes.iter().flat_map(|r| r.specs.clone()).collect();
    match RouteTable::overlap(&specs) {
        None => Some(()),
        // The router refused the pattern itself, naming no other route.
        Some((later, earlier)) if later == earlier => {
            let at = &file.routes[specs[later].value].value.path;
            p.invalid(
                at,
                "path",
                "is not a pattern routes can have: a `{*name}` must be the whole last \
                 segment, and a segment holds at most one `{param}`, closed by `}`"
                    .to_owned(),
            );
            None
        }
        Some((later, earlier)) => {
            let (later, earlier) = (specs[later].value, specs[earlier].value);
            let problem = ConfigProblem::Overlap {
                route: routes[later].name.clone(),
                path: file.routes[later].value.path.value.clone(),
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
    (index, name): (usize, String),
    r: &FileRoute,
    target: Option<Target>,
    (cursors, has_redis, identities): (
        Option<&Arc<CursorCodec>>,
        super::limits::Stores,
        &Identities,
    ),
) -> ReadRoute {
    check_path(p, r);
    let methods = r.methods.as_ref().map(|list| methods(p, list));
    let list = r
        .list
        .as_ref()
        .map(|l| super::list::list(p, &name, l, cursors));
    let lacks = |wanted: &[&str]| {
        r.methods
            .as_ref()
            .is_some_and(|m| !m.value.iter().any(|m| wanted.contains(&m.value.as_str())))
    };
    let no_get = lacks(&["GET"]);
    if let Some(l) = r.list.as_ref().filter(|_| no_get) {
        p.invalid(
            l,
            "list",
            "applies to GET (and HEAD) requests, but this route's `methods` has no GET: add GET or remove `list`".to_owned(),
        );
    }
    if let Some(t) = r.table.as_ref().filter(|_| lacks(&["GET", "HEAD"])) {
        p.invalid(
            t,
            "table",
            "answers GET and HEAD requests, but this route's `methods` has neither: add GET or remove `methods`".to_owned(),
        );
    }
    if let (Some(l), Some(true)) = (&r.list, r.allow_read_body) {
        // Rack lets a body's parameters win over the query's, Rails and Laravel take a body's
        // when the query lacks them: a GET body could carry the `offset` pagination refuses.
        p.invalid(
            l,
            "list",
            "cannot be combined with `allow_read_body: true`: a GET body may carry paging parameters (offset=, page=) that Rack, Rails and Laravel read and pagegate does not check; remove `allow_read_body` or `list`".to_owned(),
        );
    }
    let timeouts = TimeoutOverrides {
        response: r
            .response_timeout
            .as_ref()
            .map(|t| p.duration(Some(t), "response_timeout", DEFAULT_RESPONSE_TIMEOUT)),
        idle: r
            .idle_timeout
            .as_ref()
            .map(|t| p.duration(Some(t), "idle_timeout", DEFAULT_IDLE_TIMEOUT)),
    };
    let limits = r
        .limits
        .as_ref()
        .map(|l| super::limits::limits(p, l, (has_redis, identities)));
    if let (Some(at), Some(limits), Some(target)) = (&r.limits, &limits, &target) {
        one_identity(p, at, limits, target);
        rows_on_tables(p, at, limits, Some(target));
    }
    let kind = (list.is_some(), r.table.is_some());
    let suffixes = target.as_ref().is_none_or(Target::format_suffixes);
    let specs = route_specs(&r.path.value, methods.as_ref(), kind, suffixes, index);
    let config = target.map(|target| {
        Arc::new(RouteConfig {
            name: name.clone(),
            path: r.path.value.clone(),
            methods,
            target,
            list,
            timeouts,
            limits,
            allow_read_body: r.allow_read_body.unwrap_or(false),
        })
    });
    ReadRoute {
        name,
        specs,
        config,
    }
}

/// A row quota or a service's row cost counts table exports' rows: anywhere else it would
/// count nothing.
pub(super) fn rows_on_tables(
    p: &mut Problems,
    at: &Spanned<FileLimits>,
    limits: &LimitsConfig,
    target: Option<&Target>,
) {
    let exports = match target {
        Some(Target::Table(t)) => !t.formats.is_empty(),
        _ => false,
    };
    let fix = "counts `rows`, which only a table route's exports have: count `bytes` here, or allow exports (`export: {formats: [csv, ndjson]}`)";
    if limits.cost.response == Some(QuotaUnit::Rows) && !exports {
        p.invalid(at, "cost", format!("response {fix}"));
    }
    let Some(quota) = limits.quota.filter(|q| q.unit == QuotaUnit::Rows) else {
        return;
    };
    match target {
        Some(Target::Table(t)) if exports => {
            let chunk = u64::from(t.chunk_rows.get());
            if quota.on_exceed == OnExceed::Cut && quota.amount < chunk {
                p.invalid(at, "quota", format!("cuts exports at whole chunks of `chunk_rows` ({chunk}), more than its {} rows: no export would send a row; raise `rows` or lower `chunk_rows`", quota.amount));
            }
        }
        _ => p.invalid(at, "quota", fix.to_owned()),
    }
}

/// A route reads one identity's claims: its limit key's and its table scope's, when both read
/// one; and a scoped table has no rows for anonymous requests.
fn one_identity(
    p: &mut Problems,
    at: &Spanned<FileLimits>,
    limits: &LimitsConfig,
    target: &Target,
) {
    let (ClientKeySource::Claim(key), Target::Table(table)) = (&limits.key, target) else {
        return;
    };
    let Some(ScopeSource::Claim { identity, .. }) = table.scope.as_ref().map(|s| &s.from) else {
        return;
    };
    if identity.name != key.identity.name {
        p.invalid(
            at,
            "key",
            format!(
                "reads identity `{}`, but the table's scope reads `{}`: use one identity for both",
                key.identity.name, identity.name
            ),
        );
    }
    if key.anonymous {
        p.invalid(at, "key", "says `anonymous: client`, but the table's scope needs a verified claim on every request: remove `anonymous`".to_owned());
    }
}
