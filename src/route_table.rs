//! Routing: which route a request belongs to. The table knows nothing of what a route does;
//! [`crate::proxy::generation`] decides what serves a request no route matches.
//!
//! Paths are matched with `matchit` (exact segments, `{param}` segments and a trailing
//! `{*rest}` catch-all). Several routes may share a path when their `methods` are disjoint.
//! Before matching, percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2), so
//! `/ev%65nts` cannot slip past the `/events` route to the backend, which would decode it.

mod normal;
mod target;

use normal::{Separators, normalize, nul};

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
    /// Two readings of the path, as two kinds of backend read it, find two routes
    /// ([`AmbiguousPath`]): refused.
    pub ambiguous: bool,
}

/// The routes sharing one normalized path.
#[derive(Debug, Clone)]
struct PathGroup<T> {
    routes: Vec<Entry<T>>,
    /// The pattern ends in a `{*rest}` catch-all.
    catch_all: bool,
    /// The pattern is `/{*rest}`.
    root_catch_all: bool,
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
    /// The same routes by [`normal::strict`] patterns: how backends that match exact segments
    /// read a path that is not in normal form.
    strict: matchit::Router<PathGroup<T>>,
}

// === impl RouteTable ===

impl<T: Clone + PartialEq> RouteTable<T> {
    /// Builds the table. Routes that overlap an earlier one are left out: the first wins.
    /// Validation refuses such configs ([`Self::overlap`]), so a loaded config loses none.
    pub(crate) fn new(routes: &[RouteSpec<T>]) -> Self {
        Self::build(routes).0
    }

    /// The first overlap, as `(later, earlier)` route indices, if any. `(i, i)`: the router
    /// refused route `i`'s pattern itself (a catch-all not last, a `{param}` not closed).
    pub(crate) fn overlap(routes: &[RouteSpec<T>]) -> Option<(usize, usize)> {
        Self::build(routes).1
    }

    fn build(routes: &[RouteSpec<T>]) -> (Self, Option<(usize, usize)>) {
        let (router, overlap) = Self::router(routes, |path| {
            normalize(path, Separators::Backslash).into_owned()
        });
        // Overlaps are the loose reading's: `/Events` and `/events` overlap there.
        let (strict, _) = Self::router(routes, |path| normal::strict(path).into_owned());
        (Self { router, strict }, overlap)
    }

    /// The routes by `key(path)` pattern, and the first overlap.
    fn router(
        routes: &[RouteSpec<T>],
        key: impl Fn(&str) -> String,
    ) -> (matchit::Router<PathGroup<T>>, Option<(usize, usize)>) {
        let mut overlap = None;
        // Group routes by normalized pattern; one pattern may serve disjoint method sets.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let pattern = key(&route.path);
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
                root_catch_all: pattern.starts_with("/{*"),
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
        (router, overlap)
    }

    /// The route for a method and a raw request path. A route that serves GET also serves
    /// HEAD (RFC 9110 §9.3.2).
    #[cfg(test)]
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<&T> {
        self.lookup(method, path).route
    }

    /// The route for a method and a raw request path, and whether the path is a list path.
    ///
    /// A path is read every way some backend could read it — loosely as the router does (case
    /// folded, `;params` and trailing dots dropped), exactly as backends that match segments
    /// do (when the path is not in normal form), with `%2F`, `%5C` and `\` as separators or as
    /// characters, and without a format extension (`/events.json`; only routes whose backend
    /// reads format suffixes take that reading). A
    /// list route found by any reading wins over a route that is not one, any route over a
    /// catch-all, and a route matched with no parameter over one that took one: neither a
    /// catch-all nor a `/{slug}` may take `/events.json` away from the `/events` list route,
    /// nor `/login.json` from a rate-limited `/login`. On a tie the earlier reading wins. The
    /// path is a list path when any reading is. When two readings find two routes (neither
    /// `/{*rest}`), the path is `ambiguous`: the backend serves one of them, which depends on
    /// its framework, and the router refuses it.
    pub(crate) fn lookup(&self, method: &Method, path: &str) -> Found<'_, T> {
        let mut seen = (false, false);
        let plain = normalize(path, Separators::Backslash);
        // The router's reading first: on a tie, it wins.
        let mut hits = [None; 5];
        hits[0] = Self::best(&self.router, method, &plain, &mut seen);
        // Not in normal form: backends that match exact segments may read it otherwise
        // (case, `;params`, trailing dots, `\` kept).
        if matches!(plain, std::borrow::Cow::Owned(_)) {
            hits[1] = Self::best(&self.strict, method, &normal::strict(path), &mut seen);
        }
        // `%2F`, `%5C` and `\` as characters (Express, Rails, Go), `%2F` alone as a separator
        // (WSGI, ASGI), all of them (IIS). `%2F` may also appear once unreserved escapes are
        // decoded (`%2%66`).
        if path.contains('%') || path.contains('\\') {
            for (hit, separators) in hits[2..].iter_mut().zip([
                Separators::None,
                Separators::EncodedSlash,
                Separators::All,
            ]) {
                *hit = Self::best(
                    &self.router,
                    method,
                    &normalize(path, separators),
                    &mut seen,
                );
            }
        }
        let best = hits.iter().copied().fold(None, higher);
        let ambiguous = hits
            .iter()
            .enumerate()
            .any(|(i, a)| hits[i + 1..].iter().any(|b| apart(*a, *b)));
        Found {
            route: best.map(|hit| hit.route),
            list_path: seen.0,
            routed_path: seen.1,
            ambiguous,
        }
    }

    /// The best route for a normalized path, read as written and without its extension; notes
    /// in `seen` whether a list route, and whether any route, is on the path.
    fn best<'a>(
        router: &'a matchit::Router<PathGroup<T>>,
        method: &Method,
        path: &str,
        seen: &mut (bool, bool),
    ) -> Option<Hit<'a, T>> {
        let stem = without_extension(path).map(|stem| (stem, Reading::Stem));
        let mut best = None;
        for (path, reading) in std::iter::once((path, Reading::Written)).chain(stem) {
            let (hit, list_path, routed_path) = Self::exact(router, method, path, reading);
            seen.0 |= list_path;
            seen.1 |= routed_path;
            best = higher(best, hit);
        }
        best
    }

    /// The route serving `method` at a normalized path read as `reading` (and its rank: 4 for a
    /// list route, plus 2 unless its pattern is a catch-all, plus 1 when it matched with no
    /// parameter), whether the path is a list path, and whether any route serves it.
    fn exact<'a>(
        router: &'a matchit::Router<PathGroup<T>>,
        method: &Method,
        path: &str,
        reading: Reading,
    ) -> (Option<Hit<'a, T>>, bool, bool) {
        let Ok(matched) = router.at(path) else {
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
                route = Some(Hit {
                    route: &entry.value,
                    rank,
                    root_catch_all: group.root_catch_all,
                });
            }
        }
        (route, list_path, routed)
    }
}

/// The bit of a lookup's rank that says its route's pattern is no catch-all.
const RANK_NOT_CATCH_ALL: u8 = 2;

/// A route a reading of the path found, and its rank (see [`RouteTable::lookup`]).
#[derive(Debug)]
struct Hit<'a, T> {
    route: &'a T,
    rank: u8,
    /// Its pattern is `/{*rest}`: "everything else", as `default` is.
    root_catch_all: bool,
}

impl<T> Clone for Hit<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Hit<'_, T> {}

/// The higher-ranked of two hits; on a tie, the first.
fn higher<'a, T>(first: Option<Hit<'a, T>>, then: Option<Hit<'a, T>>) -> Option<Hit<'a, T>> {
    match (first, then) {
        (Some(a), Some(b)) if b.rank > a.rank => Some(b),
        (None, b) => b,
        (a, _) => a,
    }
}

/// Whether two readings found two routes, neither of them `/{*rest}` ("everything else": the
/// other wins over it, as any route does over `default`).
fn apart<T: PartialEq>(a: Option<Hit<'_, T>>, b: Option<Hit<'_, T>>) -> bool {
    matches!((a, b), (Some(a), Some(b))
        if a.route != b.route && !a.root_catch_all && !b.root_catch_all)
}

/// `/events.json` is `/events` to Rails and DRF format suffixes: the path without its
/// extension, when it has one.
fn without_extension(path: &str) -> Option<&str> {
    let (stem, extension) = path.rsplit_once('.')?;
    let plain = !extension.is_empty() && !extension.contains('/') && !stem.ends_with('/');
    plain.then_some(stem)
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
