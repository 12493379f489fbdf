//! An export's chunks in flight ([`Pipeline`]): fetched in tasks of their own, up to
//! `parallel` consecutive key ranges at once, written in key order.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::chunks::Chunks;
use crate::table::PgError;

/// A chunk's fetch in a task of its own, aborted when dropped (the client left): the task's
/// statement is cancelled then ([`crate::table::running::Running`]).
struct AbortOnDrop(tokio::task::JoinHandle<Fetched>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type Fetched = (Chunks, Option<Result<Bytes, PgError>>);

/// An export's chunks in flight, written in key order. With `parallel` 1, the next chunk is
/// fetched while the last is written. With more, the export runs as consecutive key ranges of
/// `chunk_rows` rows: each range's task first finds where its range ends (an index walk, much
/// shorter than the chunk's statement), and the next range's task starts from there while it
/// fetches its rows, up to `parallel` ranges at once, each on a connection of the route's
/// share. Nothing is fetched past `parallel` chunks ahead of the client: a slow client slows
/// the queries, and memory stays at `parallel + 1` chunks whatever the row count.
pub(super) struct Pipeline {
    /// Fetches in key order, the oldest first.
    queue: VecDeque<AbortOnDrop>,
    /// The newest range's end, once its task has found it; `None` when no range is left to
    /// start (or ranges are not used).
    end: Option<oneshot::Receiver<Option<Vec<String>>>>,
    /// What each new range's task starts from.
    template: Chunks,
    parallel: usize,
}

impl Pipeline {
    /// The pipeline of `chunks` (the export from its start), its first fetch started.
    pub(super) fn start(chunks: Chunks, parallel: usize) -> Self {
        let mut pipeline = Self {
            queue: VecDeque::with_capacity(parallel + 1),
            end: None,
            template: chunks.clone(),
            parallel,
        };
        pipeline.template.header = false;
        // Past the first chunk, no client value is new ([`Chunks::fail`]).
        pipeline.template.served = true;
        if parallel > 1 {
            pipeline.range(chunks);
        } else {
            pipeline.queue.push_back(Self::fetch(chunks));
        }
        pipeline
    }

    /// The next chunk of `chunks`, fetched in a task.
    fn fetch(mut chunks: Chunks) -> AbortOnDrop {
        AbortOnDrop(tokio::spawn(async move {
            let chunk = chunks.next().await;
            (chunks, chunk)
        }))
    }

    /// Starts the range `chunks` begins: its end, once found, starts the next.
    fn range(&mut self, mut chunks: Chunks) {
        let (end, found) = oneshot::channel();
        self.end = Some(found);
        self.queue.push_back(AbortOnDrop(tokio::spawn(async move {
            let chunk = chunks.next_range(end).await;
            (chunks, chunk)
        })));
    }

    /// Starts the range after `end`, or (`None`) no more: the last range runs to the end.
    fn next_range(&mut self, end: Option<Vec<String>>) {
        self.end = None;
        if let Some(end) = end {
            let mut chunks = self.template.clone();
            chunks.after = Some(end);
            self.range(chunks);
        }
    }

    /// Starts the ranges whose start is known, while fewer than `parallel` are in flight.
    fn start_ready(&mut self) {
        while self.queue.len() < self.parallel {
            let Some(found) = &mut self.end else { return };
            match found.try_recv() {
                Ok(end) => self.next_range(end),
                Err(oneshot::error::TryRecvError::Empty) => return,
                // The task failed before finding its end: its error comes in order.
                Err(oneshot::error::TryRecvError::Closed) => self.end = None,
            }
        }
    }

    /// The next chunk in key order; `None` after the last, or after an error.
    pub(super) async fn next(&mut self) -> Option<Result<Bytes, PgError>> {
        loop {
            self.start_ready();
            let room = self.queue.len() < self.parallel;
            let Self { queue, end, .. } = self;
            let front = queue.front_mut()?;
            // While the oldest fetch runs, the newest range's end starts the next range.
            let waited = match end {
                Some(found) if room => tokio::select! {
                    biased;
                    joined = &mut front.0 => Ok(joined),
                    found = found => Err(found),
                },
                _ => Ok((&mut front.0).await),
            };
            let joined = match waited {
                Ok(joined) => joined,
                Err(found) => {
                    // A closed channel: the task failed before finding its end, and its
                    // error comes in order.
                    self.next_range(found.unwrap_or(None));
                    continue;
                }
            };
            self.queue.pop_front();
            let (chunks, chunk) = match joined {
                Ok(fetched) => fetched,
                Err(error) => {
                    // A failed task is a failed export, never a short one that looks whole.
                    tracing::error!(%error, "an export chunk's task failed");
                    return self.fail(PgError::Unavailable);
                }
            };
            if !chunks.done {
                // More rows in this range than its end promised (written since), or the next
                // chunk without ranges: fetched before anything after it.
                self.queue.push_front(Self::fetch(chunks));
            }
            match chunk {
                // A range whose rows went since its end was found.
                None => continue,
                Some(Err(error)) => return self.fail(error),
                Some(Ok(bytes)) => {
                    self.template.capacity = bytes.len();
                    self.start_ready();
                    return Some(Ok(bytes));
                }
            }
        }
    }

    /// The export's end on `error`: every fetch in flight is aborted (its statement
    /// cancelled), and nothing follows.
    fn fail(&mut self, error: PgError) -> Option<Result<Bytes, PgError>> {
        self.queue.clear();
        self.end = None;
        Some(Err(error))
    }
}
