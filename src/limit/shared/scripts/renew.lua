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
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', key, tonumber(last[2]) + 1) end
  a = a + n + 1
end
return held
