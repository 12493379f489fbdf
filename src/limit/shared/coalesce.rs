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
//! others' verdicts. A request that left before its turn is not sent (its lease would have
//! nobody to give it back).

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::connection::{Redis, RedisError};

/// Requests one script run takes at most: bounds how long Redis runs it (each request is a
/// few commands) and its argument count. More wait in the same turn go in further runs, sent
/// together.
const MAX_REQUESTS: usize = 64;

/// What a request waits for: the script's answer to its own call.
type Answer = Result<Vec<i64>, RedisError>;

/// One route's calls waiting for their turn's flush.
#[derive(Debug, Default)]
pub(super) struct Coalesce {
    queue: Arc<Mutex<Vec<Waiting>>>,
}

/// A request's call: its keys and arguments as [`super::scripts::TAKE`] takes one request's.
#[derive(Debug)]
struct Waiting {
    keys: Vec<String>,
    args: Vec<String>,
    answer: oneshot::Sender<Answer>,
}

impl Coalesce {
    /// Runs one request's `TAKE` call, with the calls of the requests enqueued in the same
    /// turn. Bounded by `redis.timeout` from the flush (the runtime turn before it is not).
    pub(super) async fn take(&self, redis: &Redis, keys: Vec<String>, args: Vec<String>) -> Answer {
        let (answer, verdict) = oneshot::channel();
        let first = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.push(Waiting { keys, args, answer });
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
    // A request that left is not charged, and takes no lease that nobody would give back.
    calls.retain(|call| !call.answer.is_closed());
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
    let mut keys = Vec::with_capacity(calls.iter().map(|c| c.keys.len()).sum());
    let mut args = Vec::with_capacity(1 + calls.iter().map(|c| 2 + c.args.len()).sum::<usize>());
    let mut waiting = Vec::with_capacity(calls.len());
    args.push(calls.len().to_string());
    for call in calls {
        args.push(call.keys.len().to_string());
        args.push(call.args.len().to_string());
        keys.extend(call.keys);
        args.extend(call.args);
        waiting.push(call.answer);
    }
    let answers: Result<Vec<Vec<i64>>, RedisError> = redis.run(0, &keys, &args).await;
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
    for (answer, to) in answers.into_iter().zip(waiting) {
        // A request that left meanwhile: its lease guard gives the lease back.
        let _ = to.send(Ok(answer));
    }
}

/// The run's error, to each of its requests.
fn send_all(waiting: Vec<oneshot::Sender<Answer>>, error: &RedisError) {
    for to in waiting {
        let _ = to.send(Err(error.clone()));
    }
}
