//! The log writer: lines go into one in-memory buffer that a background thread writes to stdout
//! in batches — when it passes [`FLUSH_BYTES`] or every [`FLUSH_INTERVAL`], as nginx's
//! `access_log … buffer=64k flush=1s` does. A line costs a short memcpy under a mutex, and one
//! line in each 64 KiB wakes the writer; no line waits for a syscall or a slow stdout. Past
//! [`MAX_BUFFERED`] lines are dropped and counted.
//!
//! Written by hand because tracing-appender's non-blocking writer, the obvious crate, sends each
//! line through a channel that wakes its writer thread, which then writes that line alone:
//! measured in `bench/hop.sh`, that took pagegate from 24 to 47 µs of CPU per proxied request.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Buffered bytes that wake the writer thread before its interval is up (64 KiB).
pub(crate) const FLUSH_BYTES: usize = 64 * 1024;
/// Longest a line waits in the buffer (1 second).
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Most bytes held while stdout cannot keep up; later lines are dropped (8 MiB).
pub(crate) const MAX_BUFFERED: usize = 8 * 1024 * 1024;
/// How long exit waits for the last lines to be written to a stdout that does not take them.
pub(crate) const EXIT_FLUSH_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Shared {
    buffer: Mutex<Vec<u8>>,
    wake: Condvar,
    closed: AtomicBool,
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while appending leaves at worst a partial line: keep logging.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands out writers into the shared buffer (a tracing-subscriber `MakeWriter`).
#[derive(Debug, Clone)]
pub(crate) struct BufferedLog {
    shared: Arc<Shared>,
}

/// Counts the lines dropped because the buffer was full.
#[derive(Debug, Clone)]
pub(crate) struct DropCounter(Arc<Shared>);

impl DropCounter {
    /// Lines dropped so far.
    pub(crate) fn dropped_lines(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// Stops the writer thread when dropped, after writing what is buffered (waiting at most
/// [`EXIT_FLUSH_WAIT`] for a stdout that blocks).
#[derive(Debug)]
pub(crate) struct FlushGuard {
    shared: Arc<Shared>,
    done: Option<mpsc::Receiver<()>>,
}

impl BufferedLog {
    /// A buffer drained into `out` by a new background thread.
    pub(crate) fn spawn<W: Write + Send + 'static>(out: W) -> std::io::Result<(Self, FlushGuard)> {
        let shared = Arc::new(Shared::default());
        let drained = Arc::clone(&shared);
        let (finished, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("pagegate-log".to_owned())
            .spawn(move || {
                drain(&drained, out);
                let _ = finished.send(());
            })?;
        Ok((
            Self {
                shared: Arc::clone(&shared),
            },
            FlushGuard {
                shared,
                done: Some(done),
            },
        ))
    }

    /// The drop counter, for `/metrics`.
    pub(crate) fn drop_counter(&self) -> DropCounter {
        DropCounter(Arc::clone(&self.shared))
    }
}

fn drain<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::with_capacity(FLUSH_BYTES * 2);
    loop {
        let closed = {
            let buffer = shared.lock();
            let (mut buffer, _) = shared
                .wake
                .wait_timeout_while(buffer, FLUSH_INTERVAL, |b| {
                    b.len() < FLUSH_BYTES && !shared.closed.load(Ordering::Acquire)
                })
                .unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut *buffer, &mut spare);
            shared.closed.load(Ordering::Acquire)
        };
        if !spare.is_empty() {
            // A failed write (stdout closed) loses this batch; there is nowhere to report it.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
            // Give back memory a burst made the buffer grow to.
            spare.shrink_to(FLUSH_BYTES * 2);
        }
        if closed {
            let rest = std::mem::take(&mut *shared.lock());
            let _ = out.write_all(&rest).and_then(|()| out.flush());
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        if let Some(done) = self.done.take() {
            // A stdout that takes nothing (a stopped pipe reader) must not keep the process
            // alive: the last lines are lost after the wait.
            let _ = done.recv_timeout(EXIT_FLUSH_WAIT);
        }
    }
}

/// One event's writer: appends to the shared buffer.
#[derive(Debug)]
pub(crate) struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.shared.lock();
        if buffer.len() + line.len() > MAX_BUFFERED {
            drop(buffer);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        let before = buffer.len();
        buffer.extend_from_slice(line);
        let crossed = before < FLUSH_BYTES && buffer.len() >= FLUSH_BYTES;
        drop(buffer);
        if crossed {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedLog {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests;
