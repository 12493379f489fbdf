//! Reloads when the config file, or a certificate, key or CA file it names, changes. Their
//! directories are watched, not the files: Kubernetes updates a mounted ConfigMap or Secret by
//! swapping a `..data` symlink, which no event on a file's own path reports. Events are
//! gathered until none came for [`SETTLE`] (a slow writer's every write is one; at most
//! [`SETTLE_MAX`]), then the files are read; a reload runs only when they differ from
//! what the running config read, so an editor's several writes or an unrelated file in a
//! directory cost nothing.
//!
//! A refused change is tried again, after [`POLL`] and then twice as long each time up to
//! [`RETRY_MAX`], until it applies or the files go back (it may name files that do not exist
//! yet, in directories nobody watches); its reason is logged once, again only when it
//! changes. Every [`POLL`] the watched directories follow
//! the running config too (a reload by SIGHUP or `POST /reload` may name new files). Where a
//! directory cannot be watched (no inotify, its limits spent), the files are read every
//! [`POLL`] instead.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Handle;
use crate::config::text_hash;
use crate::sync::lock;

/// How long the files must be quiet (no event) before they are read.
const SETTLE: Duration = Duration::from_millis(250);
/// Longest events are gathered, however many keep coming.
const SETTLE_MAX: Duration = Duration::from_secs(5);
/// How often the files are read when a directory cannot be watched, and the watched
/// directories follow the running config.
const POLL: Duration = Duration::from_secs(2);
/// Longest wait between two tries of a refused change.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Watches `path` and the TLS files of the running config, and reloads through `handle` when
/// they change, until the process ends.
pub(crate) async fn watch(handle: Handle, path: PathBuf) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let names: Arc<Mutex<Vec<OsString>>> = Arc::default();
    let filter = Arc::clone(&names);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| concerns(&event, &lock(&filter))) {
            // Full means a read is already due.
            let _ = tx.try_send(());
        }
    });
    let mut watched = match watcher {
        Ok(watcher) => Some(Watched {
            watcher,
            dirs: BTreeSet::new(),
            names,
        }),
        Err(error) => {
            tracing::warn!(%error, "cannot watch files; reading them every 2s instead");
            None
        }
    };
    let mut refused: Option<String> = None;
    // The hash of the text last read, for polling to tell a changed file.
    let mut tried = String::new();
    let mut retry = POLL;
    loop {
        let files = files(&handle, &path);
        if let Some(w) = &mut watched
            && !w.follow(&files)
        {
            watched = None;
        }
        let changed = match &watched {
            Some(_) => tokio::select! {
                event = rx.recv() => {
                    if event.is_none() {
                        return;
                    }
                    // Until the files are quiet: a file written in pieces is read whole.
                    let most = tokio::time::Instant::now() + SETTLE_MAX;
                    while let Ok(Ok(Some(_))) =
                        tokio::time::timeout_at(most, tokio::time::timeout(SETTLE, rx.recv())).await
                    {}
                    true
                }
                () = tokio::time::sleep(if refused.is_some() { retry } else { POLL }) => false,
            },
            // Polled every 2 s. A refused file is read again at once when its text changed,
            // else on the same back-off as a watched one: not rebuilt (and counted as a
            // failed reload) every 2 s.
            None => {
                let mut waited = Duration::ZERO;
                loop {
                    tokio::time::sleep(POLL).await;
                    waited += POLL;
                    if refused.is_none() || waited >= retry {
                        break refused.is_none();
                    }
                    if std::fs::read(&path).is_ok_and(|text| text_hash(&text) != tried) {
                        break true;
                    }
                }
            }
        };
        if changed {
            retry = POLL;
        } else if refused.is_some() {
            retry = (retry * 2).min(RETRY_MAX);
        }
        if changed || refused.is_some() {
            check(&handle, &path, &mut refused, &mut tried).await;
        }
    }
}

/// The config file and the running config's TLS files, each also where its symlinks lead (a
/// file linked from another directory changes there).
fn files(handle: &Handle, path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_owned()];
    files.extend(handle.generation().config().tls_paths());
    let resolved: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| std::fs::canonicalize(f).ok().filter(|r| r != f))
        .collect();
    files.extend(resolved);
    files
}

/// The watcher, the directories it watches and the names in them that matter.
struct Watched {
    watcher: RecommendedWatcher,
    dirs: BTreeSet<PathBuf>,
    names: Arc<Mutex<Vec<OsString>>>,
}

impl Watched {
    /// Watches the directories of `files` (and no others); `false` when one cannot be watched.
    fn follow(&mut self, files: &[PathBuf]) -> bool {
        let dirs: BTreeSet<PathBuf> = files.iter().map(|f| dir_of(f)).collect();
        for gone in self.dirs.difference(&dirs) {
            let _ = self.watcher.unwatch(gone);
        }
        for new in dirs.difference(&self.dirs) {
            if let Err(error) = self.watcher.watch(new, RecursiveMode::NonRecursive) {
                tracing::warn!(%error, dir = %new.display(), "cannot watch a directory; reading the files every 2s instead");
                return false;
            }
        }
        self.dirs = dirs;
        *lock(&self.names) = files.iter().flat_map(|f| watched_names(f)).collect();
        true
    }
}

/// The directory a file is in (`.` for a bare name).
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The names in the directory whose change may change the file: its own, the target of the
/// symlink it is (as first seen), and Kubernetes' `..data`.
fn watched_names(path: &Path) -> Vec<OsString> {
    let mut names = vec![OsString::from("..data")];
    names.extend(path.file_name().map(ToOwned::to_owned));
    if let Ok(target) = std::fs::read_link(path) {
        // `config.yaml -> ..data/config.yaml`: the first component is what gets swapped.
        if let Some(std::path::Component::Normal(first)) = target.components().next() {
            names.push(first.to_owned());
        }
    }
    names
}

/// Whether `event` may have changed a file. Reads are not changes: inotify reports each
/// open, and our own read of a file would otherwise set off the next check, forever.
fn concerns(event: &notify::Event, names: &[OsString]) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.paths.is_empty()
        || event
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| names.iter().any(|w| w == n)))
}

/// Reloads when the files differ from what the running config read. `refused` is the reason
/// the last try was refused, while that change is pending: logged once, not again.
async fn check(handle: &Handle, path: &Path, refused: &mut Option<String>, tried: &mut String) {
    // Mid-swap the file may be missing for a moment; the swap's own event comes next.
    let Ok(text) = std::fs::read(path) else {
        return;
    };
    let running = handle.generation();
    *tried = text_hash(&text);
    let same_text = *tried == running.config().hash();
    if same_text && !running.config().tls_changed() {
        *refused = None;
        return;
    }
    let what = if same_text {
        "a TLS file changed"
    } else {
        "config file changed"
    };
    match handle.reload_source().await {
        Ok(hash) => {
            *refused = None;
            tracing::info!(%hash, "{what}: reloaded");
        }
        Err(error) => {
            let reason = error.to_string();
            if refused.as_ref() != Some(&reason) {
                tracing::error!(%error, "{what}: reload refused; the running config stays (tried again shortly)");
            }
            *refused = Some(reason);
        }
    }
}

#[cfg(test)]
mod tests;
