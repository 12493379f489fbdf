//! An export's chunks in flight ([`Pipeline`]): fetched in tasks of their own, up to
//! `parallel` consecutive key ranges at once, written in key order.

use std::collections::VecDeque;

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::chunks::{Chunk, Chunks};
use crate::table::PgError;

/// A chunk's fetch in a task of its own, aborted when dropped (the client left): the task's
/// statement is cancelled then ([`crate::table::running::Running`]).
struct AbortOnDrop(tokio::task::JoinHandle<Fetched>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type Fetched = (Chunks, Option<Result<Chunk, PgError>>);

/// Where the next range starts: the end of the newest range, awaited from its task, or known
/// and waiting for room.
enum NextStart {
    Awaited(oneshot::Receiver<Option<Vec<String>>>),
    Known(Vec<String>),
}

/// An export's chunks in flight, written in key order. The first chunk is fetched alone (an
/// export smaller than a chunk takes one statement). With `parallel` 1, each next chunk is
/// fetched while the last is written. With more, the rest runs as consecutive key ranges of
/// one chunk each (`chunk_rows` rows, fewer after a chunk reached `chunk_bytes`): each range's task first finds where its range ends (an index walk, much
/// shorter than the chunk's statement), and the next range's task starts from there while it
/// fetches its rows, up to `parallel` ranges at once, each on a connection of the route's
/// share; a range beyond the first in flight starts only while the share has a place to
/// spare (two free), so an export never takes the last place the route's pages need. Nothing is fetched past
/// `parallel` chunks ahead of the client: a slow client slows the queries, and memory stays
/// at `parallel + 1` chunks whatever the row count.
pub(super) struct Pipeline {
    /// Fetches in key order, the oldest first.
    queue: VecDeque<AbortOnDrop>,
    /// Where the next range starts; `None` when no range is left to start (or ranges are not
    /// used).
    next: Option<NextStart>,
    /// What each new range's task starts from.
    template: Chunks,
    parallel: usize,
}

impl Pipeline {
    /// The pipeline of `chunks` (the export from its start), its first fetch started.
    pub(super) fn start(chunks: Chunks, parallel: usize) -> Self {
        let mut pipeline = Self {
            queue: VecDeque::with_capacity(parallel + 1),
            next: None,
            template: chunks.clone(),
            parallel,
        };
        pipeline.template.header = false;
        // Past the first chunk, no client value is new ([`Chunks::fail`]).
        pipeline.template.served = true;
        pipeline.queue.push_back(Self::fetch(chunks));
        pipeline
    }

    /// Whether another fetch may start now, and where: the one that always may (nothing in
    /// flight) waits for its place in its task; beside it, fewer than `parallel` in flight and
    /// a place to spare in the route's share, taken here.
    fn room(&self) -> Option<Option<OwnedSemaphorePermit>> {
        if self.queue.is_empty() {
            return Some(None);
        }
        if self.queue.len() >= self.parallel {
            return None;
        }
        self.template.resource.spare_place().map(Some)
    }

    /// The next chunk of `chunks`, fetched in a task.
    fn fetch(mut chunks: Chunks) -> AbortOnDrop {
        AbortOnDrop(tokio::spawn(async move {
            let chunk = chunks.next().await;
            (chunks, chunk)
        }))
    }

    /// Starts the range `chunks` begins, in `place` if taken: its end, once found, starts the
    /// next.
    fn range(&mut self, mut chunks: Chunks, place: Option<OwnedSemaphorePermit>) {
        let (end, found) = oneshot::channel();
        self.next = Some(NextStart::Awaited(found));
        self.queue.push_back(AbortOnDrop(tokio::spawn(async move {
            let chunk = chunks.next_range(end, place).await;
            (chunks, chunk)
        })));
    }

    /// Records what the newest range's task found: the next range's start, or (`None`, or
    /// the task gone: it failed before finding its end, and its error comes in order) no
    /// range after it.
    fn found(&mut self, end: Option<Vec<String>>) {
        self.next = end.map(NextStart::Known);
    }

    /// Starts the ranges whose start is known, while there is room.
    fn start_ready(&mut self) {
        loop {
            match &mut self.next {
                Some(NextStart::Awaited(found)) => match found.try_recv() {
                    Ok(end) => self.found(end),
                    Err(oneshot::error::TryRecvError::Empty) => return,
                    Err(oneshot::error::TryRecvError::Closed) => self.found(None),
                },
                Some(NextStart::Known(_)) => {
                    let Some(place) = self.room() else {
                        return;
                    };
                    let Some(NextStart::Known(start)) = self.next.take() else {
                        return;
                    };
                    let mut chunks = self.template.clone();
                    chunks.after = Some(start);
                    self.range(chunks, place);
                }
                None => return,
            }
        }
    }

    /// The next chunk in key order; `None` after the last, or after an error.
    pub(super) async fn next(&mut self) -> Option<Result<Chunk, PgError>> {
        loop {
            self.start_ready();
            let Self { queue, next, .. } = self;
            let front = queue.front_mut()?;
            // While the oldest fetch runs, the newest range's end may start the next range.
            let waited = match next {
                Some(NextStart::Awaited(found)) => tokio::select! {
                    biased;
                    joined = &mut front.0 => Ok(joined),
                    found = found => Err(found),
                },
                _ => Ok((&mut front.0).await),
            };
            let joined = match waited {
                Ok(joined) => joined,
                Err(found) => {
                    self.found(found.unwrap_or(None));
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
            // Later ranges start at the size this one's rows allowed (`chunk_bytes`).
            self.template.rows_per_chunk = chunks.rows_per_chunk;
            if !chunks.done {
                if chunks.until.is_none() && self.parallel > 1 {
                    // The open end of the export (its first chunk, or a last range that grew):
                    // the rest runs as ranges. Nothing else is in flight.
                    self.range(chunks, None);
                } else {
                    // More rows in this range than its end promised (written since), or the
                    // next chunk without ranges: fetched before anything after it.
                    self.queue.push_front(Self::fetch(chunks));
                }
            }
            match chunk {
                // A range whose rows went since its end was found.
                None => continue,
                Some(Err(error)) => return self.fail(error),
                Some(Ok(chunk)) => {
                    self.template.capacity = chunk.bytes.len();
                    self.start_ready();
                    return Some(Ok(chunk));
                }
            }
        }
    }

    /// The export's end on `error`: every fetch in flight is aborted (its statement
    /// cancelled), and nothing follows.
    fn fail(&mut self, error: PgError) -> Option<Result<Chunk, PgError>> {
        self.queue.clear();
        self.next = None;
        Some(Err(error))
    }
}
