//! The layout rules, checked on the source tree:
//!
//! * dependencies point one way, down the tiers below, and never close a cycle; an edge that
//!   points up fails and names itself;
//! * no `src` file is over [`MAX_LINES`] lines (`tests.rs` files excepted).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The tiers, lowest first. A module may name modules of its own tier or below, never above.
const TIERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "sync",
            "body",
            "http1",
            "problem",
            "client_addr",
            "cursor",
            "telemetry",
            "tls",
            "route_table",
            "config::file",
            "config::problems",
            "config::defaults",
            "config::redact",
        ],
    ),
    (
        "features",
        &["list", "limit", "table", "upstream", "methods", "identity"],
    ),
    ("config loading", &["config"]),
    ("request path", &["proxy"]),
    ("listener", &["server"]),
    ("entry points", &["demo", "cli"]),
];

/// Longest a source file may be, in lines.
const MAX_LINES: usize = 400;

/// Files still over [`MAX_LINES`] until their split lands, each with the length it may not
/// pass. A file leaves this list when it is split; an entry for a file now short fails.
const STILL_TO_SPLIT: &[(&str, usize)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src`, with its path relative to `src`.
fn sources() -> Vec<(String, PathBuf)> {
    let root = src();
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&root).expect("under src");
                let rel = rel.to_str().expect("utf-8").replace('\\', "/");
                out.push((rel, path));
            }
        }
    }
    out.sort();
    out
}

/// The node a module path (`config::load`, `list::guard`) belongs to.
fn node_of(path: &[&str]) -> Option<&'static str> {
    let nodes = TIERS.iter().flat_map(|(_, nodes)| nodes.iter().copied());
    let mut best: Option<&'static str> = None;
    for node in nodes {
        let parts: Vec<&str> = node.split("::").collect();
        if path.len() >= parts.len()
            && path[..parts.len()] == parts[..]
            && best.is_none_or(|b| b.split("::").count() < parts.len())
        {
            best = Some(node);
        }
    }
    best
}

fn tier_of(node: &str) -> usize {
    TIERS
        .iter()
        .position(|(_, nodes)| nodes.contains(&node))
        .expect("a listed node")
}

/// The lines of `text` that are code, numbered from 1: comments and `#[cfg(test)]` items
/// (to the end of their braces, or their `;`) are left out.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            let mut depth = 0i32;
            for (_, item) in lines.by_ref() {
                depth += item.matches('{').count() as i32 - item.matches('}').count() as i32;
                if depth <= 0 && (item.trim_end().ends_with(';') || item.contains('}')) {
                    break;
                }
            }
        } else if !trimmed.starts_with("//") {
            out.push((n, line));
        }
    }
    out
}

/// Node → the nodes its non-test code names as `crate::…`, with one place each is named.
fn edges() -> BTreeMap<&'static str, BTreeMap<&'static str, String>> {
    let mut edges: BTreeMap<&'static str, BTreeMap<&'static str, String>> = BTreeMap::new();
    for (rel, path) in sources() {
        if rel == "lib.rs" || rel == "main.rs" || rel.ends_with("tests.rs") {
            continue;
        }
        let module: Vec<&str> = rel.trim_end_matches(".rs").split('/').collect();
        let from = node_of(&module).unwrap_or_else(|| panic!("src/{rel} is in no tier"));
        let text = std::fs::read_to_string(&path).expect("source");
        // Code only: test items and comments (doc links) are not dependencies.
        for (n, line) in code_lines(&text) {
            for piece in line.split("crate::").skip(1) {
                let target: Vec<&str> = piece
                    .split("::")
                    .map(|s| {
                        let end = s
                            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                            .unwrap_or(s.len());
                        &s[..end]
                    })
                    .take_while(|s| !s.is_empty())
                    .collect();
                if let Some(to) = node_of(&target).filter(|to| *to != from) {
                    let at = format!("src/{rel}:{}", n + 1);
                    edges.entry(from).or_default().entry(to).or_insert(at);
                }
            }
        }
    }
    edges
}

#[test]
fn dependencies_point_down_the_tiers() {
    let edges = edges();
    // The scan sees real edges: the listener builds generations, features read their leaves.
    assert!(edges["server"].contains_key("proxy"));
    assert!(edges["list"].contains_key("cursor"));
    let mut up = Vec::new();
    for (from, targets) in &edges {
        for (to, at) in targets {
            if tier_of(to) > tier_of(from) {
                let (from_tier, to_tier) = (TIERS[tier_of(from)].0, TIERS[tier_of(to)].0);
                up.push(format!("{at}: {from} ({from_tier}) names {to} ({to_tier})"));
            }
        }
    }
    assert!(up.is_empty(), "edges that point up:\n{}", up.join("\n"));
}

#[test]
fn modules_have_no_import_cycles() {
    let edges = edges();
    fn visit(
        node: &'static str,
        path: &mut Vec<&'static str>,
        edges: &BTreeMap<&'static str, BTreeMap<&'static str, String>>,
        done: &mut BTreeSet<&'static str>,
    ) {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let cycle: Vec<String> = path[at..]
                .iter()
                .zip(path[at..].iter().skip(1).chain([&node]))
                .map(|(a, b)| format!("{a} -> {b} ({})", edges[a][b]))
                .collect();
            panic!("import cycle:\n{}", cycle.join("\n"));
        }
        if !done.insert(node) {
            return;
        }
        path.push(node);
        for next in edges.get(node).into_iter().flat_map(|t| t.keys()) {
            visit(next, path, edges, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, &mut Vec::new(), &edges, &mut done);
    }
}

#[test]
fn source_files_stay_short() {
    let allowed: BTreeMap<&str, usize> = STILL_TO_SPLIT.iter().copied().collect();
    let mut long = Vec::new();
    for (rel, path) in sources() {
        if rel.ends_with("tests.rs") {
            continue;
        }
        let lines = std::fs::read_to_string(&path)
            .expect("source")
            .lines()
            .count();
        match allowed.get(rel.as_str()) {
            Some(&cap) if lines <= MAX_LINES => long.push(format!(
                "src/{rel}: {lines} lines now; take it off STILL_TO_SPLIT (was {cap})"
            )),
            Some(&cap) if lines > cap => long.push(format!(
                "src/{rel}: {lines} lines, more than its {cap} while it waits to be split"
            )),
            None if lines > MAX_LINES => long.push(format!(
                "src/{rel}: {lines} lines; split it by role under {MAX_LINES}"
            )),
            _ => {}
        }
    }
    for rel in allowed.keys() {
        assert!(
            src().join(rel).exists(),
            "STILL_TO_SPLIT names src/{rel}, which is gone"
        );
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}
