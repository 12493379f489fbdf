local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- One request's call: its keys and arguments.
local function take(keys, argv)
  local r = tonumber(argv[1])
  local s = #keys - r
  local first = 2 * r + 2
  local id = argv[first + s]
  -- Rate key i's remaining requests and time to full, its arrival time at `tat`.
  local function left(i, tat)
    local interval = tonumber(argv[2 * i])
    local tolerance = tonumber(argv[2 * i + 1])
    return math.max(0, math.floor((now + tolerance - tat) / interval) + 1), tat - now
  end
  if s > 0 and redis.call('ZSCORE', keys[r + 1], id) then
    local again = {0}
    for i = 1, r do
      local tat = tonumber(redis.call('GET', keys[i])) or now
      if tat < now then tat = now end
      local remaining, reset = left(i, tat)
      again[#again + 1] = remaining
      again[#again + 1] = reset
    end
    return again
  end
  local tats = {}
  for i = 1, r do
    local interval = tonumber(argv[2 * i])
    local tolerance = tonumber(argv[2 * i + 1])
    local tat = tonumber(redis.call('GET', keys[i])) or now
    if tat < now then tat = now end
    if tat - tolerance > now then
      return {1, i, tat - tolerance - now}
    end
    tats[i] = tat + interval
  end
  local rates = {}
  for i = 1, r do
    local tat = tats[i]
    redis.call('SET', keys[i], tat, 'PX', math.floor((tat - now) / 1000) + 1)
    local remaining, reset = left(i, tat)
    rates[#rates + 1] = remaining
    rates[#rates + 1] = reset
  end
  local ms = math.floor(now / 1000)
  local ttl = tonumber(argv[first + s + 1])
  local out = {0}
  for i = 1, s do
    local key = keys[r + i]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', ms)
    if redis.call('ZCARD', key) >= tonumber(argv[first + i - 1]) then
      out = {2, i}
      break
    end
  end
  if out[1] == 0 then
    for i = 1, s do
      redis.call('ZADD', keys[r + i], ms + ttl, id)
      local last = redis.call('ZRANGE', keys[r + i], -1, -1, 'WITHSCORES')
      redis.call('PEXPIREAT', keys[r + i], tonumber(last[2]) + 1)
    end
  end
  for _, v in ipairs(rates) do out[#out + 1] = v end
  return out
end
-- ARGV[1] requests, each with its key count and argument count, then its arguments; their
-- keys follow each other in KEYS. They run in turn, on one clock reading. A request whose
-- keys hold another type answers {3} and is logged here, and the others go on; any other
-- error (READONLY on a demoted master, OOM) fails the run, for the client to see.
local out = {}
local k, a = 1, 2
for j = 1, tonumber(ARGV[1]) do
  local nk, na = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local keys, argv = {}, {}
  for i = 1, nk do keys[i] = KEYS[k + i - 1] end
  for i = 1, na do argv[i] = ARGV[a + 1 + i] end
  local ok, answer = pcall(take, keys, argv)
  if ok then
    out[j] = answer
  else
    -- Redis 7 raises a table ({err = ...}), Redis 6.2 a string.
    local message = type(answer) == 'table' and answer.err or tostring(answer)
    if not string.find(message, 'WRONGTYPE', 1, true) then
      error(answer)
    end
    redis.log(redis.LOG_WARNING, 'pagegate TAKE on ' .. tostring(keys[1]) .. ': ' .. message)
    out[j] = {3}
  end
  k = k + nk
  a = a + 2 + na
end
return out
