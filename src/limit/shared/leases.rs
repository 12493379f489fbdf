//! Leases on shared slots, kept by one task per route ([`Keeper`]) rather than one per
//! request: each third of `lease_ttl` it renews every live lease of the route in one script
//! call, and it gives back together, in one call, the leases dropped since its last turn.
//! A request's slot thus costs its share of `TAKE` and of one batched call, not a second
//! round trip, a task and a timer of its own; when the route is idle a dropped lease is given
//! back at once, since its drop wakes the keeper.
//!
//! Giving a lease back a little late is safe: a slot held longer makes the limit stricter,
//! never looser. A keeper that cannot reach Redis leaves its leases to expire after
//! `lease_ttl`, as a replica that died would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::{BATCH, Redis};

/// The live and dropped leases of one route, and the task that renews and returns them.
#[derive(Debug)]
pub(crate) struct Keeper {
    redis: Redis,
    ttl: Duration,
    state: Mutex<State>,
    /// Wakes the task: a lease was dropped.
    wake: Arc<Notify>,
    /// The task runs (it is started by the first lease, which runs on a Tokio runtime).
    started: AtomicBool,
}

/// A lease's id (the counter part of its member name) and the sets it is held in.
type Held = (u64, Vec<String>);

#[derive(Debug, Default)]
struct State {
    live: HashMap<u64, Vec<String>>,
    dropped: Vec<Held>,
}

/// A lease on a shared slot; dropping it gives the slot back (through the keeper).
#[derive(Debug)]
pub(crate) struct Lease {
    keeper: Arc<Keeper>,
    id: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.keeper.lock();
        if let Some(sets) = state.live.remove(&self.id) {
            state.dropped.push((self.id, sets));
        }
        drop(state);
        self.keeper.wake.notify_one();
    }
}

impl Keeper {
    pub(crate) fn new(redis: Redis) -> Arc<Self> {
        let ttl = redis.config.lease_ttl;
        Arc::new(Self {
            redis,
            ttl,
            state: Mutex::new(State::default()),
            wake: Arc::new(Notify::new()),
            started: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The member name of lease `id` in Redis's sets: unique to this process.
    pub(crate) fn member(&self, id: u64) -> String {
        format!("{:016x}-{id}", self.redis.process)
    }

    /// A new lease id.
    pub(crate) fn next_id(&self) -> u64 {
        self.redis.leases.fetch_add(1, Ordering::Relaxed)
    }

    /// Holds lease `id`, taken in `sets`, renewing it until the returned [`Lease`] drops.
    pub(crate) fn hold(self: &Arc<Self>, id: u64, sets: Vec<String>) -> Lease {
        self.lock().live.insert(id, sets);
        if !self.started.swap(true, Ordering::Relaxed) {
            tokio::spawn(keep(Arc::downgrade(self), Arc::clone(&self.wake), self.ttl));
        }
        Lease {
            keeper: Arc::clone(self),
            id,
        }
    }

    /// Gives back lease `id`, which Redis may have taken in `sets` though its answer was
    /// never read (a timeout, a client that left).
    pub(crate) fn give_back(&self, id: u64, sets: Vec<String>) {
        self.lock().dropped.push((id, sets));
        self.wake.notify_one();
        if !self.started.load(Ordering::Relaxed) {
            // No task to do it (no lease was ever held): one call of its own.
            self.flush_detached();
        }
    }

    /// Gives the dropped leases back from a task of their own (the keeper is going away).
    fn flush_detached(&self) {
        let dropped = std::mem::take(&mut self.lock().dropped);
        if dropped.is_empty() {
            return;
        }
        let (redis, members) = (self.redis.clone(), self.members(dropped));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { release(&redis, members).await });
        }
    }

    /// Leases with their member names.
    fn members(&self, leases: Vec<Held>) -> Vec<(String, Vec<String>)> {
        leases
            .into_iter()
            .map(|(id, sets)| (self.member(id), sets))
            .collect()
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.flush_detached();
    }
}

/// The keeper's task: gives dropped leases back when woken, renews live ones each third of
/// `ttl`; ends once the keeper is gone (its last leases are given back by its drop).
async fn keep(keeper: Weak<Keeper>, wake: Arc<Notify>, ttl: Duration) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let renew = tokio::select! {
            () = wake.notified() => false,
            _ = tick.tick() => true,
        };
        // Let the requests that are ready run first: their leases join this batch.
        tokio::task::yield_now().await;
        let Some(keeper) = keeper.upgrade() else {
            return;
        };
        let (dropped, live) = {
            let mut state = keeper.lock();
            let live = renew.then(|| {
                state
                    .live
                    .iter()
                    .map(|(id, sets)| (*id, sets.clone()))
                    .collect::<Vec<_>>()
            });
            (std::mem::take(&mut state.dropped), live)
        };
        let (redis, dropped) = (keeper.redis.clone(), keeper.members(dropped));
        let live = live.map(|live| keeper.members(live));
        // Not held across the calls: the last lease and route may go meanwhile.
        drop(keeper);
        release(&redis, dropped).await;
        if let Some(live) = live {
            renew_all(&redis, live, ttl).await;
        }
    }
}

/// Gives `leases` back, [`BATCH`] a call.
async fn release(redis: &Redis, leases: Vec<(String, Vec<String>)>) {
    for batch in leases.chunks(BATCH) {
        let (keys, args) = by_set(batch, Vec::new());
        if let Err(error) = redis.run::<i64>(2, &keys, &args).await {
            tracing::debug!(%error, leases = batch.len(), "leases could not be given back; they expire after lease_ttl");
        }
    }
}

/// Renews `leases` for another `ttl`, [`BATCH`] a call.
async fn renew_all(redis: &Redis, leases: Vec<(String, Vec<String>)>, ttl: Duration) {
    for batch in leases.chunks(BATCH) {
        let (keys, args) = by_set(batch, vec![ttl.as_millis().to_string()]);
        let sent = args.len() - 1 - keys.len();
        match redis.run::<i64>(1, &keys, &args).await {
            Ok(held) if usize::try_from(held).unwrap_or(0) < sent => {
                tracing::debug!(
                    "a lease expired before its renewal (Redis was unreachable for lease_ttl); its slot may be another's"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, leases = batch.len(), "lease renewals failed; they expire after lease_ttl");
            }
        }
    }
}

/// The scripts' keys and arguments for `leases`: each set once, and after `args`, for each
/// set in turn, how many members follow, then those members.
fn by_set(leases: &[(String, Vec<String>)], mut args: Vec<String>) -> (Vec<String>, Vec<String>) {
    let mut sets: HashMap<&str, Vec<&str>> = HashMap::new();
    for (member, keys) in leases {
        for key in keys {
            sets.entry(key).or_default().push(member);
        }
    }
    let mut keys = Vec::with_capacity(sets.len());
    for (key, members) in sets {
        keys.push(key.to_owned());
        args.push(members.len().to_string());
        args.extend(members.into_iter().map(str::to_owned));
    }
    (keys, args)
}

/// A lease asked for whose answer has not been read (see `Shared::take`): dropped armed,
/// it is given back, since Redis may have taken it.
pub(super) struct Pending {
    pub(super) keeper: Arc<Keeper>,
    pub(super) sets: Vec<String>,
    pub(super) id: u64,
    pub(super) armed: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.armed {
            self.keeper
                .give_back(self.id, std::mem::take(&mut self.sets));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::by_set;

    #[test]
    fn each_set_is_named_once_with_its_members_counted() {
        let leases = vec![
            ("a".to_owned(), vec!["s:c1".to_owned(), "s:t".to_owned()]),
            ("b".to_owned(), vec!["s:c2".to_owned(), "s:t".to_owned()]),
        ];
        let (keys, args) = by_set(&leases, vec!["1000".to_owned()]);
        assert_eq!(keys.len(), 3);
        assert_eq!(args[0], "1000");
        // Walk the arguments as the scripts do.
        let mut at = 1;
        let mut seen = Vec::new();
        for key in &keys {
            let n: usize = args[at].parse().expect("a count");
            let mut members = args[at + 1..=at + n].to_vec();
            members.sort();
            seen.push((key.clone(), members));
            at += n + 1;
        }
        assert_eq!(at, args.len(), "nothing after the last set");
        seen.sort();
        assert_eq!(
            seen,
            vec![
                ("s:c1".to_owned(), vec!["a".to_owned()]),
                ("s:c2".to_owned(), vec!["b".to_owned()]),
                ("s:t".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
            ]
        );
    }
}
