//! The Lua scripts shared limits run, one round trip each: `TAKE` (rates, then a lease) for
//! the requests of one runtime turn ([`super::coalesce`]), `RENEW` and `RELEASE` for a batch of leases. They use only commands Redis 6.2 has
//! (`TIME`, `GET`, `SET`, `ZADD`, `ZCARD`, `ZSCORE`, `ZRANGE`, `ZREMRANGEBYSCORE`, `ZREM`,
//! `PEXPIREAT`), so its forks run them too.
//!
//! A slot set expires with its latest lease (`PEXPIREAT` at the highest score), never sooner:
//! replicas with different `lease_ttl`s (a rolling change) cannot cut each other's leases.

/// One round trip for one or more requests, taken in turn on one reading of Redis's clock.
/// `ARGV[1]` is the number of requests; for each, its key count and argument count, then its
/// arguments; its keys follow the ones before in `KEYS`. Returns one answer per request.
///
/// A request's call, in its own keys and arguments: GCRA over the rate keys, then a lease in
/// the slot sets. Its first argument is the number of rate keys `r`; its first `r` keys are
/// the rate keys (the client's, then the route's) with their emission interval and delay
/// tolerance (µs) next in its arguments; its remaining keys are slot sets (the client's, then
/// the route's) with their limits next, then the lease id and its life (ms).
///
/// The rates are all or nothing: a request refused by one spends none, and takes no slot:
/// `{1, i, wait_us}`. Otherwise they are spent, and a lease is taken when every set holds
/// fewer live leases than its limit: `{0, remaining, reset_us, ...}` per rate key, or
/// `{2, i, remaining, reset_us, ...}` when set `i` is full (the rates stay spent, as a request
/// that waits for a slot has been counted).
///
/// A call whose lease is already in the first set took it before — the Cluster client sends
/// it again when the connection dropped before its answer — and answers as it did, spending
/// nothing more. (A call that found a set full and is sent again spends its rates twice:
/// stricter, never looser.)
pub(super) const TAKE: &str = include_str!("scripts/take.lua");

/// Renews leases: `ARGV[1]` is their life (ms); then, for each set in `KEYS` in turn, how
/// many lease ids follow and those ids. A lease that expired (its slot may be another's now)
/// is not taken again. Returns how many (set, lease) pairs were still held.
pub(super) const RENEW: &str = include_str!("scripts/renew.lua");

/// `limits.batch`'s flush: adds requests counted in a process to rate keys and reads their
/// state back. `ARGV` holds, for each key in turn, its emission interval (µs), the requests to
/// add (already let on, so never refused here) and `chain`, the arrival time GCRA over those
/// requests alone reaches. The key becomes the later of its state advanced by the requests and
/// that chain: GCRA over the requests, whenever they came. Returns Redis's clock (µs), then
/// each key's theoretical arrival time (at least now). The keys are `TAKE`'s: both modes share
/// one budget.
pub(super) const SYNC: &str = include_str!("scripts/sync.lua");

/// Gives leases back: for each set in `KEYS` in turn, `ARGV` holds how many lease ids
/// follow, then those ids.
pub(super) const RELEASE: &str = include_str!("scripts/release.lua");
