//! Routing: which route a request belongs to. The table knows nothing of what a route does;
//! [`crate::proxy::generation`] decides what serves a request no route matches.
//!
//! Paths are matched with `matchit` (exact segments, `{param}` segments and a trailing
//! `{*rest}` catch-all). Several routes may share a path when their `methods` are disjoint.
//! Before matching, percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2), so
//! `/ev%65nts` cannot slip past the `/events` route to the backend, which would decode it.

use std::borrow::Cow;

mod target;

pub(crate) use target::{AmbiguousPath, BadHost, DotPath, unfit};

use http::Method;

/// What the table needs to know of a route: where it is, which methods it serves, and whether
/// it is a list route. The table knows nothing else of what a route does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec<T> {
    /// `matchit` path pattern.
    pub path: String,
    /// Methods it serves; `None` for all.
    pub methods: Option<Vec<Method>>,
    /// Whether the route has a list policy.
    pub list: bool,
    /// Whether what serves the route reads `/events.json` as `/events` (format suffixes), so
    /// the path without its extension finds it too.
    pub suffixes: bool,
    /// What a lookup returns for it (for pagegate: the route's index in the generation).
    pub value: T,
}

/// The result of a lookup: the route serving this method here, if any, and whether some
/// route on this path is a list route whatever its methods (a `POST` or a `get` on a list
/// path is suspicious even when no route serves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found<'a, T> {
    /// The route serving the method on this path.
    pub route: Option<&'a T>,
    /// Some route on this path has a list policy.
    pub list_path: bool,
    /// Some route serves this path, whatever its methods: a method spelled so that a backend
    /// would read it as another must not slip past that route to the `default` one.
    pub routed_path: bool,
    /// The path read with `%2F` as a separator finds another route than read as written
    /// ([`AmbiguousPath`]): refused.
    pub ambiguous: bool,
}

/// The routes sharing one normalized path.
#[derive(Debug, Clone)]
struct PathGroup<T> {
    routes: Vec<Entry<T>>,
    /// The pattern ends in a `{*rest}` catch-all.
    catch_all: bool,
}

/// One route of a [`PathGroup`].
#[derive(Debug, Clone)]
struct Entry<T> {
    methods: Option<Vec<Method>>,
    list: bool,
    suffixes: bool,
    value: T,
}

/// How a path was read: as written, or without its format extension (which only routes whose
/// backend reads format suffixes take).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Written,
    Stem,
}

/// Routes by path, then by method.
#[derive(Debug, Clone)]
pub(crate) struct RouteTable<T> {
    router: matchit::Router<PathGroup<T>>,
}

// === impl RouteTable ===

impl<T: Clone> RouteTable<T> {
    /// Builds the table. Routes that overlap an earlier one are left out: the first wins.
    /// Validation refuses such configs ([`Self::overlap`]), so a loaded config loses none.
    pub(crate) fn new(routes: &[RouteSpec<T>]) -> Self {
        Self::build(routes).0
    }

    /// The first overlap, as `(later, earlier)` route indices, if any.
    pub(crate) fn overlap(routes: &[RouteSpec<T>]) -> Option<(usize, usize)> {
        Self::build(routes).1
    }

    fn build(routes: &[RouteSpec<T>]) -> (Self, Option<(usize, usize)>) {
        let mut overlap = None;
        // Group routes by normalized pattern; one pattern may serve disjoint method sets.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let pattern = normalize(&route.path, false).into_owned();
            match groups.iter_mut().find(|(p, _)| *p == pattern) {
                Some((_, same)) => {
                    match same.iter().find(|&&j| {
                        methods_overlap(routes[j].methods.as_deref(), route.methods.as_deref())
                    }) {
                        Some(&j) => _ = overlap.get_or_insert((i, j)),
                        None => same.push(i),
                    }
                }
                None => groups.push((pattern, vec![i])),
            }
        }
        let mut router = matchit::Router::new();
        for (pattern, indices) in &groups {
            let value = PathGroup {
                routes: indices
                    .iter()
                    .map(|&i| {
                        let route = &routes[i];
                        Entry {
                            methods: route.methods.clone(),
                            list: route.list,
                            suffixes: route.suffixes,
                            value: route.value.clone(),
                        }
                    })
                    .collect(),
                catch_all: pattern.contains("{*"),
            };
            if let Err(e) = router.insert(pattern.clone(), value) {
                // matchit names the conflicting pattern; find the route that owns it.
                let other = match e {
                    matchit::InsertError::Conflict { with } => groups
                        .iter()
                        .find(|(p, _)| *p == with)
                        .map(|(_, idx)| idx[0]),
                    _ => None,
                };
                overlap.get_or_insert((indices[0], other.unwrap_or(indices[0])));
            }
        }
        (Self { router }, overlap)
    }

    /// The route for a method and a raw request path. A route that serves GET also serves
    /// HEAD (RFC 9110 §9.3.2).
    #[cfg(test)]
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<&T> {
        self.lookup(method, path).route
    }

    /// The route for a method and a raw request path, and whether the path is a list path.
    ///
    /// A path is read every way some backend could read it — as written, with `%2F` as a
    /// separator, and without a format extension (`/events.json`; only routes whose backend
    /// reads format suffixes take that reading). A list route found by any
    /// reading wins over a route that is not one, any route over a catch-all, and a route
    /// matched with no parameter over one that took one: neither a catch-all nor a `/{slug}`
    /// may take `/events.json` away from the `/events` list route, nor `/login.json` from a
    /// rate-limited `/login`. On a tie the earlier reading wins. The path is a list path when
    /// any reading is.
    pub(crate) fn lookup(&self, method: &Method, path: &str) -> Found<'_, T> {
        let mut best: Option<(&T, u8)> = None;
        let (mut list_path, mut routed_path) = (false, false);
        let mut consider = |path: &str, reading: Reading| {
            let (route, list_path_here, routed_here) = self.lookup_exact(method, path, reading);
            list_path |= list_path_here;
            routed_path |= routed_here;
            match (route, best) {
                (Some(found), Some((_, rank))) if found.1 <= rank => {}
                (Some(found), _) => best = Some(found),
                (None, _) => {}
            }
        };
        let plain = normalize(path, false);
        consider(&plain, Reading::Written);
        if let Some(stem) = without_extension(&plain) {
            consider(stem, Reading::Stem);
        }
        // Only for paths with an escape: `%2F` may also appear once unreserved escapes are
        // decoded (`%2%66`).
        let mut ambiguous = false;
        if path.contains('%') {
            let slashed = normalize(path, true);
            consider(&slashed, Reading::Written);
            if let Some(stem) = without_extension(&slashed) {
                consider(stem, Reading::Stem);
            }
            // Two routes, one for each reading of the `%2F`, neither a catch-all: the backend
            // serves one of them, and which depends on its framework. (A catch-all stands for
            // "everything else", as `default` does: the other route wins, as it does over
            // `default`.)
            let route = |path: &str| self.lookup_exact(method, path, Reading::Written).0;
            ambiguous = slashed != plain
                && matches!((route(&plain), route(&slashed)),
                    (Some((a, ra)), Some((b, rb)))
                        if !std::ptr::eq(a, b) && ra & RANK_NOT_CATCH_ALL != 0
                            && rb & RANK_NOT_CATCH_ALL != 0);
        }
        Found {
            route: best.map(|(route, _)| route),
            list_path,
            routed_path,
            ambiguous,
        }
    }

    /// The route serving `method` at a normalized path read as `reading` (and its rank: 4 for a
    /// list route, plus 2 unless its pattern is a catch-all, plus 1 when it matched with no
    /// parameter), whether the path is a list path, and whether any route serves it.
    fn lookup_exact(
        &self,
        method: &Method,
        path: &str,
        reading: Reading,
    ) -> (Option<(&T, u8)>, bool, bool) {
        let Ok(matched) = self.router.at(path) else {
            return (None, false, false);
        };
        let group = matched.value;
        let mut entries = group
            .routes
            .iter()
            .filter(|e| reading == Reading::Written || e.suffixes)
            .peekable();
        let routed = entries.peek().is_some();
        let (mut list_path, mut route) = (false, None);
        for entry in entries {
            list_path |= entry.list;
            if route.is_none() && entry.methods.as_deref().is_none_or(|m| serves(m, method)) {
                let fixed = matched.params.is_empty();
                let rank = u8::from(entry.list) * 4
                    + u8::from(!group.catch_all) * RANK_NOT_CATCH_ALL
                    + u8::from(fixed);
                route = Some((&entry.value, rank));
            }
        }
        (route, list_path, routed)
    }
}

/// The bit of a lookup's rank that says its route's pattern is no catch-all.
const RANK_NOT_CATCH_ALL: u8 = 2;

/// `/events.json` is `/events` to Rails and DRF format suffixes: the path without its
/// extension, when it has one.
fn without_extension(path: &str) -> Option<&str> {
    let (stem, extension) = path.rsplit_once('.')?;
    let plain = !extension.is_empty() && !extension.contains('/') && !stem.ends_with('/');
    plain.then_some(stem)
}

/// The form paths are matched in. Backends disagree on what names the same resource, so
/// matching is deliberately loose in the safe direction — every variant some backend would
/// serve as `/events` matches the `/events` route: percent-encoded unreserved characters are
/// decoded, `%2F`, `%5C` and `\` count as `/` (WSGI servers and IIS read them so),
/// `;parameters` are dropped (`%3B` is one too), trailing dots and spaces of a segment dropped
/// (`/events.`, `/events%2e`, `/events%20`: Windows and IIS read them as `/events`), empty and
/// `.` segments removed, `..` resolved, ASCII case folded, and a trailing slash ignored. The
/// request is forwarded as the client wrote it.
fn normalize(path: &str, encoded_slashes: bool) -> Cow<'_, str> {
    if !encoded_slashes && is_normal(path) {
        return Cow::Borrowed(path);
    }
    let mut lowered = decode_unreserved(path).to_ascii_lowercase();
    if lowered.contains('%') {
        lowered = lowered.replace("%3b", ";").replace("%20", " ");
    }
    let slashed = if encoded_slashes {
        lowered
            .replace("%2f", "/")
            .replace("%5c", "/")
            .replace('\\', "/")
    } else {
        lowered.replace('\\', "/")
    };
    let mut segments: Vec<String> = Vec::new();
    for segment in slashed.split('/') {
        let segment = segment.split(';').next().unwrap_or_default();
        // A dot segment stays one; any other loses its trailing dots and spaces.
        let segment = match segment {
            "." | ".." => segment,
            s => s.trim_end_matches(['.', ' ']),
        };
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s.to_owned()),
        }
    }
    Cow::Owned(format!("/{}", segments.join("/")))
}

/// Whether a path is already in normal form, so matching needs no copy of it: `/`-separated
/// non-empty segments of lower-case letters, digits, `-_~` and dots, none ending in a dot (a
/// dot segment, or a trailing dot Windows drops), and no trailing slash. Most requests' paths
/// are.
fn is_normal(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    rest.split('/').all(|segment| {
        !segment.is_empty()
            && !segment.ends_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_~.".contains(&b))
    })
}

/// Whether a route with `methods` serves `method`: a route with GET also serves HEAD.
fn serves(methods: &[Method], method: &Method) -> bool {
    methods.contains(method) || (method == Method::HEAD && methods.contains(&Method::GET))
}

/// Whether two routes on one path could both serve a request (HEAD counts as GET).
fn methods_overlap(a: Option<&[Method]>, b: Option<&[Method]>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x.iter().any(|m| serves(y, m)) || y.iter().any(|m| serves(x, m)),
        _ => true,
    }
}

/// Decodes `%XX` escapes of unreserved characters (ALPHA / DIGIT / `-._~`), keeps all others.
fn decode_unreserved(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return path.into();
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(c) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
                && (c.is_ascii_alphanumeric() || b"-._~".contains(&c))
            {
                out.push(char::from(c));
                i += 3;
                continue;
            }
        }
        out.push(char::from(bytes[i]));
        i += 1;
    }
    out.into()
}

/// Whether a raw request path holds a NUL byte (`%00`), which names no resource: C backends
/// and file systems end the path there.
fn nul(path: &str) -> bool {
    path.contains("%00")
}

/// A path holding a NUL byte (`%00`): refused (400), never passed to a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the path holds a NUL byte (%00), which names no resource: remove it")]
pub(crate) struct NulPath;

/// No route serves the request and the `default` policy is `deny` (404).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no route matches {method} {path}")]
pub(crate) struct NoRoute {
    /// The request method.
    pub method: Method,
    /// The request path.
    pub path: String,
}

#[cfg(test)]
mod tests;
