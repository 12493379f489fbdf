//! The Lua scripts shared limits run, one round trip each: `TAKE` (rates, then a lease) per
//! request, `RENEW` and `RELEASE` for a batch of leases. They use only commands Redis 6.2 has
//! (`TIME`, `GET`, `SET`, `ZADD`, `ZCARD`, `ZREMRANGEBYSCORE`, `ZREM`, `PEXPIRE`), so its
//! forks run them too.

/// One round trip per request: GCRA over the rate keys, then a lease in the slot sets.
/// `ARGV[1]` is the number of rate keys `r`; `KEYS[1..r]` are the rate keys (the client's,
/// then the route's) with their emission interval and delay tolerance (µs) in
/// `ARGV[2..2r+1]`; the remaining keys are slot sets (the client's, then the route's) with
/// their limits next in `ARGV`, then the lease id and its life (ms).
///
/// The rates are all or nothing: a request refused by one spends none, and takes no slot:
/// `{1, i, wait_us}`. Otherwise they are spent, and a lease is taken when every set holds
/// fewer live leases than its limit: `{0, remaining, reset_us, ...}` per rate key, or
/// `{2, i, remaining, reset_us, ...}` when set `i` is full (the rates stay spent, as a request
/// that waits for a slot has been counted).
pub(super) const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local r = tonumber(ARGV[1])
local tats = {}
for i = 1, r do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  if tat - tolerance > now then
    return {1, i, tat - tolerance - now}
  end
  tats[i] = tat + interval
end
local rates = {}
for i = 1, r do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tats[i]
  redis.call('SET', KEYS[i], tat, 'PX', math.floor((tat - now) / 1000) + 1)
  rates[#rates + 1] = math.floor((now + tolerance - tat) / interval) + 1
  rates[#rates + 1] = tat - now
end
local s = #KEYS - r
local ms = math.floor(now / 1000)
local first = 2 * r + 2
local id = ARGV[first + s]
local ttl = tonumber(ARGV[first + s + 1])
local out = {0}
for i = 1, s do
  local key = KEYS[r + i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ms)
  if redis.call('ZCARD', key) >= tonumber(ARGV[first + i - 1]) then
    out = {2, i}
    break
  end
end
if out[1] == 0 then
  for i = 1, s do
    redis.call('ZADD', KEYS[r + i], ms + ttl, id)
    redis.call('PEXPIRE', KEYS[r + i], ttl)
  end
end
for _, v in ipairs(rates) do out[#out + 1] = v end
return out
";

/// Renews leases: `ARGV[1]` is their life (ms); then, for each set in `KEYS` in turn, how
/// many lease ids follow and those ids. A lease that expired (its slot may be another's now)
/// is not taken again. Returns how many (set, lease) pairs were still held.
pub(super) const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local life = tonumber(ARGV[1])
local held = 0
local a = 2
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  local scored = {}
  for i = 1, n do
    scored[#scored + 1] = now + life
    scored[#scored + 1] = ARGV[a + i]
  end
  held = held + redis.call('ZADD', key, 'XX', 'CH', unpack(scored))
  redis.call('PEXPIRE', key, life)
  a = a + n + 1
end
return held
";

/// `limits.batch`'s flush: adds requests counted in a process to rate keys and reads their
/// state back. `ARGV` holds, for each key in turn, its emission interval (µs), the requests to
/// add (already let on, so never refused here) and `chain`, the arrival time GCRA over those
/// requests alone reaches. The key becomes the later of its state advanced by the requests and
/// that chain: GCRA over the requests, whenever they came. Returns Redis's clock (µs), then
/// each key's theoretical arrival time (at least now). The keys are `TAKE`'s: both modes share
/// one budget.
pub(super) const SYNC: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {now}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local hits = tonumber(ARGV[3 * i - 1])
  local chain = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', key)) or 0
  if hits > 0 then
    tat = tat + hits * interval
    if chain > tat then tat = chain end
    if tat > now then
      redis.call('SET', key, tat, 'PX', math.floor((tat - now) / 1000) + 1)
    end
  end
  if tat < now then tat = now end
  out[#out + 1] = tat
end
return out
";

/// Gives leases back: for each set in `KEYS` in turn, `ARGV` holds how many lease ids
/// follow, then those ids.
pub(super) const RELEASE: &str = r"
local a = 1
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  redis.call('ZREM', key, unpack(ARGV, a + 1, a + n))
  a = a + n + 1
end
return 0
";
