-- wrk script: each connection waits PACE_MS milliseconds after each answer (bench/limits.sh).
local pace = tonumber(os.getenv("PACE_MS") or "0")
function delay()
  return pace
end
