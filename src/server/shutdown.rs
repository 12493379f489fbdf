//! Stopping and reloading by signal. A drain (SIGTERM, SIGINT, `POST /drain`) turns `/ready`
//! to 503 while traffic is still served for `drain_delay`, then closes the listener; requests
//! in flight get `shutdown_grace`. A second SIGTERM or SIGINT exits at once. SIGHUP reloads the
//! config file and never stops the process.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use super::Handle;

/// Whether the server drains, watched by the accept loop and answered by `/ready`.
#[derive(Debug)]
pub(crate) struct Drain {
    draining: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            draining: watch::Sender::new(false),
        }
    }
}

impl Drain {
    /// Starts draining; `why` is logged the first time.
    pub(crate) fn start(&self, why: &str) {
        if !self.draining.send_replace(true) {
            tracing::info!(why, "draining: /ready answers 503, traffic is still served");
        }
    }

    /// Whether a drain has started.
    pub(crate) fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Resolves once a drain has started.
    pub(crate) async fn started(&self) {
        let mut draining = self.draining.subscribe();
        // The sender lives as long as `self`, so the wait ends only by a drain.
        let _ = draining.wait_for(|draining| *draining).await;
    }
}

/// The process's signal handlers, installed before anything slow starts: a SIGHUP that
/// arrived while table routes were still checked against their databases would otherwise take
/// its default action and end the process (which systemd counts as a clean exit).
pub(crate) struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; what arrives from now on waits for [`signals`].
    pub(crate) fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves with the name of the first SIGTERM or SIGINT: before anything is served, a
    /// stop is not a drain.
    pub(crate) async fn stop(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Handles the process's signals for `run`: the first SIGTERM or SIGINT drains, a second one
/// exits at once, and SIGHUP reloads through `handle`. Runs until the process ends.
pub(crate) async fn signals(handle: Handle, installed: std::io::Result<Signals>) {
    let Ok(Signals {
        mut terminate,
        mut interrupt,
        mut hangup,
    }) = installed
    else {
        tracing::error!("cannot install signal handlers; stop pagegate with SIGKILL");
        return std::future::pending().await;
    };
    // Counted apart from the drain itself: after `POST /drain`, the first signal is still a
    // first one, and drains as asked rather than exiting.
    let mut signalled = false;
    loop {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
            _ = hangup.recv() => {
                // On a task of its own: a reload that waits on its databases' checks must not
                // hold back a SIGTERM's drain (or a second signal's exit) meanwhile.
                let handle = handle.clone();
                tokio::spawn(async move {
                    match handle.reload_source().await {
                        Ok(hash) => tracing::info!(%hash, "SIGHUP: config reloaded"),
                        Err(error) => tracing::error!(%error, "SIGHUP: reload refused; the running config stays"),
                    }
                });
                continue;
            }
        };
        if signalled {
            tracing::warn!(signal = name, "second signal: exiting at once");
            // The exit skips the log writer's last flush: the reason goes to stderr too.
            eprintln!("pagegate: second {name}: exiting at once");
            std::process::exit(1);
        }
        signalled = true;
        handle.drain.start(name);
    }
}
