//! Sets `PAGEGATE_COMMIT` for `pagegate --version`: the commit the binary was built from, or
//! `unknown` outside a git checkout (a crate tarball, a Docker context without `.git`). A
//! `PAGEGATE_COMMIT` in the build's environment wins (the Dockerfile passes its build arg).
//!
//! Written by hand: a few `git` calls. The crates that do this (vergen and its kin) bring a
//! git library or many more dependencies for the same line.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .arg("-C")
        .arg(&manifest)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Whether the crate is the top of its git checkout: a crate unpacked inside some other
/// repository (a home directory under git, a vendor tree) must not report that one's commit.
fn own_checkout() -> bool {
    let top = git(&["rev-parse", "--show-toplevel"]).map(PathBuf::from);
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    match (
        top.and_then(|t| t.canonicalize().ok()),
        manifest.and_then(|m| m.canonicalize().ok()),
    ) {
        (Some(top), Some(manifest)) => top == manifest,
        _ => false,
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=PAGEGATE_COMMIT");
    let given = std::env::var("PAGEGATE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    let commit =
        given.or_else(|| own_checkout().then(|| git(&["rev-parse", "--short=12", "HEAD"]))?);
    println!(
        "cargo:rustc-env=PAGEGATE_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rerun-if-changed=build.rs");
    // A new commit or another branch moves HEAD or the refs; watched only where they exist
    // (a path that does not would rerun this on every build).
    let dirs = [
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
    ];
    let [Some(dir), Some(common)] = dirs.map(|d| d.map(PathBuf::from)) else {
        return;
    };
    if !own_checkout() {
        return;
    }
    for path in [
        dir.join("HEAD"),
        common.join("refs/heads"),
        common.join("packed-refs"),
    ] {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
