//! `TAKE` calls coalesced: the calls of a route's requests that reach Redis in one turn of the
//! runtime go in one script run, as ioredis's auto-pipelining sends the commands of one tick
//! together, but one run instead of one per command.
//!
//! A call is never held back for a timer: the first of a turn spawns a flush task, which
//! yields once (the other requests the runtime has ready enqueue theirs meanwhile) and sends
//! what it finds. A request alone waits for nothing but its round trip; requests that come
//! together cost Redis one run, and this process one command to encode, send and parse.
//! Each request's verdict stays exact: the script takes them in turn, as it would take calls
//! sent one after the other.
//!
//! The flush task, not the request, owns the call: a client that leaves does not cancel the
//! others' verdicts. A request that left before its turn is not sent; one that leaves while
//! its run is under way has the lease it may have taken given back by the flush, which holds
//! its [`Pending`] guard until the answer is handed over.
//!
//! A run reads Redis's clock once: its requests are decided as if they came at the same
//! instant, one after the other. An error of one request's keys (a key of another type)
//! fails that request alone; one of the run (a timeout, a lost connection) fails all of it.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::connection::{Redis, RedisError};
use super::leases::Pending;

/// Requests one script run takes at most: bounds how long Redis runs it (each request is a
/// few commands) and its argument count. More wait in the same turn go in further runs, sent
/// together.
const MAX_REQUESTS: usize = 64;

/// What a request waits for: the script's answer to its own call, with the guard of the
/// lease it may have taken.
type Answer = Result<(Vec<i64>, Pending), RedisError>;

/// One route's calls waiting for their turn's flush.
#[derive(Default)]
pub(super) struct Coalesce {
    queue: Arc<Mutex<Vec<Waiting>>>,
}

impl std::fmt::Debug for Coalesce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalesce").finish_non_exhaustive()
    }
}

/// One request's `TAKE` call ([`super::scripts::TAKE`]).
#[derive(Debug)]
pub(super) struct Request {
    /// The rate keys, then the slot sets.
    pub(super) keys: Vec<String>,
    /// Each rate key's emission interval and delay tolerance (µs).
    pub(super) rates: Vec<(i64, i64)>,
    /// Each slot set's limit.
    pub(super) caps: Vec<u32>,
    /// The lease's id, and its life.
    pub(super) lease: String,
    pub(super) ttl_ms: u64,
}

impl Request {
    /// Its arguments, after its key and argument counts.
    fn write_args(&self, cmd: &mut redis::Cmd) {
        cmd.arg(self.rates.len());
        for (interval, tolerance) in &self.rates {
            cmd.arg(interval).arg(tolerance);
        }
        cmd.arg(&self.caps).arg(&self.lease).arg(self.ttl_ms);
    }
}

/// A request's call, its lease's guard (armed: dropped, the lease is given back), and where
/// its answer goes.
struct Waiting {
    request: Request,
    pending: Pending,
    answer: oneshot::Sender<Answer>,
}

impl Coalesce {
    /// Runs one request's `TAKE` call, with the calls of the requests enqueued in the same
    /// turn. Bounded by `redis.timeout` from the flush (the runtime turn before it is not).
    pub(super) async fn take(&self, redis: &Redis, request: Request, pending: Pending) -> Answer {
        let (answer, verdict) = oneshot::channel();
        let first = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.push(Waiting {
                request,
                pending,
                answer,
            });
            queue.len() == 1
        };
        if first {
            tokio::spawn(flush(redis.clone(), Arc::clone(&self.queue)));
        }
        // The flush answers every call it takes; it only drops one when the runtime shuts
        // down.
        verdict
            .await
            .unwrap_or(Err(RedisError::Timeout(redis.config().timeout)))
    }
}

/// Sends the calls enqueued until the runtime gets back to this task, in runs of at most
/// [`MAX_REQUESTS`], all at once.
async fn flush(redis: Redis, queue: Arc<Mutex<Vec<Waiting>>>) {
    // Let the requests the runtime has ready enqueue theirs first.
    tokio::task::yield_now().await;
    let mut calls = std::mem::take(&mut *queue.lock().unwrap_or_else(|e| e.into_inner()));
    // A request that left is not charged, and takes no lease: nothing to give back.
    calls.retain_mut(|call| {
        let open = !call.answer.is_closed();
        call.pending.armed &= open;
        open
    });
    if calls.len() <= MAX_REQUESTS {
        return run(&redis, calls).await;
    }
    let mut runs = Vec::with_capacity(calls.len().div_ceil(MAX_REQUESTS));
    while !calls.is_empty() {
        let rest = calls.split_off(calls.len().min(MAX_REQUESTS));
        runs.push(run(&redis, std::mem::replace(&mut calls, rest)));
    }
    futures_util::future::join_all(runs).await;
}

/// One script run for `calls`; each gets its own answer, or the run's error.
async fn run(redis: &Redis, calls: Vec<Waiting>) {
    if calls.is_empty() {
        return;
    }
    let answers: Result<Vec<Vec<i64>>, RedisError> = redis
        .eval(0, |cmd| {
            cmd.arg(calls.iter().map(|c| c.request.keys.len()).sum::<usize>());
            for call in &calls {
                cmd.arg(&call.request.keys);
            }
            cmd.arg(calls.len());
            for Waiting { request, .. } in &calls {
                // Its argument count: the rate count, two per rate, the caps, the lease.
                let count = 1 + 2 * request.rates.len() + request.caps.len() + 2;
                cmd.arg(request.keys.len()).arg(count);
                request.write_args(cmd);
            }
        })
        .await;
    let waiting: Vec<_> = calls
        .into_iter()
        .map(|call| (call.pending, call.answer))
        .collect();
    let answers = match answers {
        Ok(answers) if answers.len() == waiting.len() => answers,
        Ok(answers) => {
            let error = RedisError::Redis(redis::RedisError::from((
                redis::ErrorKind::Client,
                "a limits answer for another number of requests",
                format!("{} answers to {} requests", answers.len(), waiting.len()),
            )));
            return send_all(waiting, &error);
        }
        Err(error) => return send_all(waiting, &error),
    };
    for (answer, (pending, to)) in answers.into_iter().zip(waiting) {
        // A request that left meanwhile gets nothing: the guard comes back with the answer
        // and, dropped armed, gives its lease back.
        let _ = to.send(Ok((answer, pending)));
    }
}

/// The run's error, to each of its requests. Their guards are dropped armed: Redis may have
/// taken the leases before the error (a timeout), so they are given back.
fn send_all(waiting: Vec<(Pending, oneshot::Sender<Answer>)>, error: &RedisError) {
    for (pending, to) in waiting {
        drop(pending);
        let _ = to.send(Err(error.clone()));
    }
}
