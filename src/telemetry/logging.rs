//! Logging: `tracing` through the non-blocking writer ([`super::log_writer`]), as text or as
//! flat JSON (`PAGEGATE_LOG_FORMAT=json`), with a filter `PUT /log-level` can change while
//! pagegate runs.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use super::log_writer::{BufferedLog, DropCounter, FlushGuard};

/// The log writer's drop counter, set once by [`init`] and read when metrics are scraped.
pub(super) static LOG_DROPS: OnceLock<DropCounter> = OnceLock::new();

/// Replaces the running filter; set once by [`init`].
type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;
static SET_FILTER: OnceLock<SetFilter> = OnceLock::new();

/// Keeps the log writer's thread alive; dropping it writes what is buffered.
#[derive(Debug)]
pub(crate) struct LogGuard(#[allow(dead_code)] Option<FlushGuard>);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// `PAGEGATE_LOG_FORMAT`: `text` (the default) or `json`; anything else is an error that says
/// so, never a silent fallback.
fn format() -> Result<Format, String> {
    match std::env::var("PAGEGATE_LOG_FORMAT") {
        Err(std::env::VarError::NotPresent) => Ok(Format::Text),
        Ok(value) if value.is_empty() || value == "text" => Ok(Format::Text),
        Ok(value) if value == "json" => Ok(Format::Json),
        Ok(value) => Err(format!(
            "PAGEGATE_LOG_FORMAT is {value:?}: write json (one flat object per line) or text"
        )),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err("PAGEGATE_LOG_FORMAT is not UTF-8: write json or text".to_owned())
        }
    }
}

/// Starts logging. `RUST_LOG` picks the filter (default `info`), `PAGEGATE_LOG_FORMAT` the
/// format; colours only when stdout is a terminal. A bad `PAGEGATE_LOG_FORMAT` is an error.
pub(crate) fn init() -> Result<LogGuard, String> {
    let format = format()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let Ok((writer, guard)) = BufferedLog::spawn(std::io::stdout()) else {
        eprintln!("cannot start the log writer thread; logging to stderr");
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .try_init();
        return Ok(LogGuard(None));
    };
    let drops = writer.drop_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(writer);
    // The two formats are two subscriber types; each keeps its reload handle in a closure.
    let result = match format {
        Format::Json => {
            let builder = builder.json().flatten_event(true).with_filter_reloading();
            let handle = builder.reload_handle();
            let set: SetFilter = Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()));
            builder.try_init().map(|()| set)
        }
        Format::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            let set: SetFilter = Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()));
            builder.try_init().map(|()| set)
        }
    };
    // A second init (tests start many proxies in one process) keeps the first subscriber.
    let Ok(set) = result else {
        return Ok(LogGuard(None));
    };
    let _ = SET_FILTER.set(set);
    let _ = LOG_DROPS.set(drops);
    Ok(LogGuard(Some(guard)))
}

/// Replaces the log filter with `directives` (`debug`, `info,pagegate=debug`, as `RUST_LOG`).
pub(crate) fn set_log_filter(directives: &str) -> Result<(), String> {
    if directives.is_empty() {
        return Err("it is empty".to_owned());
    }
    let filter = EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
    match SET_FILTER.get() {
        Some(set) => set(filter),
        None => Err("logging was not started by pagegate in this process".to_owned()),
    }
}
