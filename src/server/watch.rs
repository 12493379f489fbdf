//! Reloads when the config file changes. Its directory is watched, not the file: Kubernetes
//! updates a mounted ConfigMap by swapping a `..data` symlink, which no event on the file's own
//! path reports. Events are gathered for [`SETTLE`], then the file is read; a reload runs only
//! when its contents differ from the running config's and from the last contents tried, so an
//! editor's several writes or an unrelated file in the directory cost nothing. Where the
//! directory cannot be watched (no inotify, its limits spent), the file is read every
//! [`POLL`] instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Handle;
use crate::config::text_hash;

/// How long events are gathered before the file is read.
const SETTLE: Duration = Duration::from_millis(250);
/// How often the file is read when its directory cannot be watched.
const POLL: Duration = Duration::from_secs(2);

/// Watches `path` and reloads through `handle` when it changes, until the process ends.
pub(crate) async fn watch(handle: Handle, path: PathBuf) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let names = watched_names(&path);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| concerns(&event, &names)) {
            // Full means a read is already due.
            let _ = tx.try_send(());
        }
    })
    .and_then(|mut w: RecommendedWatcher| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
    // Kept until the loop ends: dropping it stops the watching.
    let watcher = match watcher {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(%error, dir = %dir.display(), "cannot watch the config's directory; reading the file every 2s instead");
            None
        }
    };
    let polling = watcher.is_none();
    let mut tried = None;
    loop {
        if polling {
            tokio::time::sleep(POLL).await;
        } else {
            if rx.recv().await.is_none() {
                return;
            }
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
        }
        check(&handle, &path, &mut tried).await;
    }
}

/// The names in the directory whose change may change the file: its own, the target of the
/// symlink it is (as first seen), and Kubernetes' `..data`.
fn watched_names(path: &Path) -> Vec<std::ffi::OsString> {
    let mut names = vec![std::ffi::OsString::from("..data")];
    names.extend(path.file_name().map(ToOwned::to_owned));
    if let Ok(target) = std::fs::read_link(path) {
        // `config.yaml -> ..data/config.yaml`: the first component is what gets swapped.
        if let Some(std::path::Component::Normal(first)) = target.components().next() {
            names.push(first.to_owned());
        }
    }
    names
}

/// Whether `event` may have changed the file. Reads are not changes: inotify reports each
/// open, and our own read of the file would otherwise set off the next check, forever.
fn concerns(event: &notify::Event, names: &[std::ffi::OsString]) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.paths.is_empty()
        || event
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| names.iter().any(|w| w == n)))
}

/// Reloads when the file's contents are new: neither the running config's nor the last tried.
async fn check(handle: &Handle, path: &Path, tried: &mut Option<String>) {
    // Mid-swap the file may be missing for a moment; the swap's own event comes next.
    let Ok(text) = std::fs::read(path) else {
        return;
    };
    let hash = text_hash(&text);
    if hash == handle.generation().config().hash() || tried.as_ref() == Some(&hash) {
        return;
    }
    *tried = Some(hash);
    match handle.reload_source().await {
        Ok(hash) => tracing::info!(%hash, "config file changed: reloaded"),
        Err(error) => {
            tracing::error!(%error, "config file changed: reload refused; the running config stays");
        }
    }
}

#[cfg(test)]
mod tests;
