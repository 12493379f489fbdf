local a = 1
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  redis.call('ZREM', key, unpack(ARGV, a + 1, a + n))
  a = a + n + 1
end
return 0
