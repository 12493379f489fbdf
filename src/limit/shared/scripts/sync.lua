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
