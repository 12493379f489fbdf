//! The docs stay true to the tree: every path `docs/ARCHITECTURE.md` names exists, every
//! relative link in README and `docs/` resolves, every problem type the answer table
//! writes is documented, and the bench scripts read their peers from the repository.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The Markdown files: README and every page under `docs/`.
fn pages() -> Vec<String> {
    let mut pages = vec!["README.md".to_owned()];
    for entry in std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .flatten()
    {
        let name = entry.file_name().into_string().expect("utf-8");
        if name.ends_with(".md") {
            pages.push(format!("docs/{name}"));
        }
    }
    pages
}

#[test]
fn every_path_the_architecture_names_exists() {
    let text = read("docs/ARCHITECTURE.md");
    let mut named = 0;
    for span in text.split('`').skip(1).step_by(2) {
        let prefixes = ["src/", "tests/", "benches/", "bench/", "fuzz/", "docs/"];
        if prefixes.iter().any(|p| span.starts_with(p)) && !span.contains(' ') {
            named += 1;
            assert!(
                root().join(span).exists(),
                "docs/ARCHITECTURE.md names `{span}`, which does not exist"
            );
        }
    }
    assert!(
        named > 30,
        "only {named} paths found: the check reads nothing"
    );
}

#[test]
fn every_relative_link_resolves() {
    for page in pages() {
        let text = read(&page);
        let dir = Path::new(&page).parent().unwrap_or(Path::new(""));
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap_or_default();
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() || file.contains("://") {
                continue;
            }
            assert!(
                root().join(dir).join(file).exists(),
                "{page} links to {target}, which does not exist"
            );
        }
    }
}

#[test]
fn every_problem_type_is_documented() {
    // The table and its rows for each feature.
    let table = read("src/proxy/rescue/answer.rs") + &read("src/proxy/rescue/answer/rows.rs");
    let docs = read("docs/configuration.md");
    let kinds: Vec<&str> = table
        .split("kind!(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(kinds.len() > 20, "only {} problem types found", kinds.len());
    for kind in kinds {
        // A cell of the problem table: the whole type, closed by its backtick.
        assert!(
            docs.contains(&format!("`urn:pagegate:problem:{kind}`")),
            "problem type {kind} has no row in docs/configuration.md's problem table"
        );
    }
}

#[test]
fn bench_scripts_read_their_peers_from_the_repository() {
    let mut scripts = 0;
    for entry in std::fs::read_dir(root().join("bench"))
        .expect("bench/")
        .flatten()
    {
        let name = entry.file_name().into_string().expect("utf-8");
        if !name.ends_with(".sh") {
            continue;
        }
        scripts += 1;
        let text = read(&format!("bench/{name}"));
        assert!(
            !text.contains("../shared") && !text.contains("../peers"),
            "bench/{name} reads a peer from outside the repository"
        );
        for (at, _) in text.match_indices("bench/peers/") {
            let path: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                .collect();
            let path = path.trim_end_matches('.');
            assert!(
                root().join(path).exists(),
                "bench/{name} names {path}, which does not exist"
            );
        }
    }
    assert!(scripts >= 5, "the bench scripts were not found");
}
