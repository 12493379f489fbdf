//! Which of inotify's real events make the watcher read the file.

use std::sync::mpsc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::{concerns, watched_names};

/// The events a real watcher of `dir` reports while `act` runs.
fn events(dir: &std::path::Path, act: impl FnOnce()) -> Vec<notify::Event> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        let _ = tx.send(e.expect("event"));
    })
    .expect("watcher");
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .expect("watch");
    act();
    let mut seen = Vec::new();
    while let Ok(event) = rx.recv_timeout(Duration::from_millis(300)) {
        seen.push(event);
    }
    seen
}

/// A scratch directory, removed when the test ends.
fn dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("pagegate-watch-{name}-"))
        .tempdir()
        .expect("dir")
}

#[test]
fn reading_the_file_or_writing_another_is_no_change() {
    let scratch = dir("quiet");
    let dir = scratch.path();
    let path = dir.join("pagegate.yaml");
    std::fs::write(&path, "a").expect("write");
    let names = watched_names(&path);
    let seen = events(dir, || {
        std::fs::read(&path).expect("read");
        std::fs::write(dir.join("other.yaml"), "x").expect("write");
    });
    assert!(!seen.is_empty(), "the watcher reports events at all");
    let concerning: Vec<_> = seen.iter().filter(|e| concerns(e, &names)).collect();
    assert!(concerning.is_empty(), "{concerning:?}");
}

#[test]
fn writing_the_file_or_swapping_data_is_a_change() {
    let scratch = dir("change");
    let dir = scratch.path();
    let path = dir.join("pagegate.yaml");
    std::fs::write(&path, "a").expect("write");
    let names = watched_names(&path);
    let seen = events(dir, || std::fs::write(&path, "b").expect("write"));
    assert!(seen.iter().any(|e| concerns(e, &names)), "{seen:?}");

    std::fs::create_dir(dir.join("..v2")).expect("dir");
    let seen = events(dir, || {
        std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).expect("link");
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
    });
    assert!(seen.iter().any(|e| concerns(e, &names)), "{seen:?}");
}
