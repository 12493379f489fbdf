#!/usr/bin/env bash
# Many users at once on one table route: keyset pages at random depths under a steady load
# (wrk -c32), while full exports stream, a slow client reads one at 2 MB/s, and clients leave
# exports half a second in. First the pages alone, then the same pages with the rest running,
# in one run on a PostgreSQL cluster this script starts. It checks, and stops on failure:
#   * every page answers 2xx, alone and under load;
#   * every full export that ran to its end holds every row (rows + the header);
#   * after the load, no statement of pagegate's is still running and it holds no more
#     connections than its pool allows (16);
#   * a page answers at once afterwards.
# It reports page p50/p99 under load against the pages alone, exports finished, clients
# that left, and pagegate's peak RSS.
#
#   bench/busy.sh                   1,000,000 rows, 30 s of load
#   ROWS=200000 SECONDS_PER=10 bench/busy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
SECONDS_PER=${SECONDS_PER:-30}
PEERS=$(cd "${PEERS:-bench/peers}" && pwd)
. bench/common.sh
need curl wrk
need_postgres
cargo build --release --quiet
BIN=$PWD/target/release/pagegate

RUN=$(mktemp -d /tmp/pagegate-busy.XXXXXX)
chmod 755 "$RUN"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  pg_stop
  wait 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT

pg_start 19040
echo "loading $ROWS rows (events_5m.sql) …"
sed -e "s/generate_series(1, 5000000)/generate_series(1, $ROWS)/" "$PEERS/events_5m.sql" | "${PSQL[@]}" >/dev/null

cat >"$RUN/pagegate.yaml" <<EOF
listen: 127.0.0.1:19042
access_log: false
cursors: {keys: [{id: 1, secret: bench-only-secret-bench-only-secret-0001}]}
postgres: {main: {url: '$PG_URL', pool_size: 16, statement_timeout: 60s, application_name: pagegate-busy}}
routes:
  - name: events
    path: /db/events
    table:
      database: main
      name: events
      columns: [id, status, created_at, user_id, message]
      key: [id]
      filters: {id: [gt], status: [eq]}
EOF
"$BIN" run --workers 2 --config "$RUN/pagegate.yaml" >"$RUN/pagegate.log" 2>&1 &
PIDS+=($!)
PG_PID=$!
BASE=http://127.0.0.1:19042/db/events
for _ in $(seq 100); do curl -fs -o /dev/null "$BASE?limit=1" && break; sleep 0.2; done
curl -fs -o /dev/null "$BASE?limit=1" || { cat "$RUN/pagegate.log"; exit 1; }

# Pages at random depths, one status in four filtered.
cat >"$RUN/pages.lua" <<EOF
math.randomseed(os.time())
request = function()
  local path = "/db/events?limit=100&id=gt." .. math.random(0, $ROWS)
  if math.random(4) == 1 then path = path .. "&status=eq.failed" end
  return wrk.format("GET", path)
end
EOF
pages() { # → "rps p50 p99"; stops on a non-2xx answer
  local out
  out=$(wrk -t1 -c32 -d"${SECONDS_PER}s" --latency -s "$RUN/pages.lua" "http://127.0.0.1:19042")
  if grep -q "Non-2xx" <<<"$out"; then
    echo "pages: non-2xx answers" >&2
    grep -E "Non-2xx|requests in" <<<"$out" >&2
    tail -20 "$RUN/pagegate.log" >&2
    exit 1
  fi
  echo "$(awk '/Requests\/sec/ { print $2 }' <<<"$out") $(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")") $(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
}

echo
echo "pages alone (wrk -t1 -c32, ${SECONDS_PER} s)"
read -r a_rps a50 a99 <<<"$(pages)"
printf '  %8.0f req/s  p50 %.3f ms  p99 %.3f ms\n' "$a_rps" "$a50" "$a99"

: >"$RUN/exports" && : >"$RUN/left" && : >"$RUN/rss"
STOP=$(($(date +%s) + SECONDS_PER))
full_exports() { # whole exports one after the other; each must hold every row
  local lines
  while [ "$(date +%s)" -lt "$STOP" ]; do
    lines=$(curl -fsS "$BASE/export?format=${1}" | wc -l)
    [ "$lines" -ge "$ROWS" ] || { echo "a $1 export held $lines lines of $ROWS rows" >&2; exit 1; }
    echo "$1" >>"$RUN/exports"
  done
}
leaving() { # exports left half a second in
  while [ "$(date +%s)" -lt "$STOP" ]; do
    curl -s -o /dev/null --max-time 0.5 "$BASE/export" || true
    echo left >>"$RUN/left"
  done
}
sample_rss() {
  while [ "$(date +%s)" -lt "$STOP" ]; do
    awk '/VmRSS/ { print $2 }' "/proc/$PG_PID/status" >>"$RUN/rss"
    sleep 0.5
  done
}
echo
echo "pages under load: 2 full exports (CSV, NDJSON) looping, one read at 2 MB/s, clients leaving exports (${SECONDS_PER} s)"
LOAD=()
full_exports csv & LOAD+=($!)
full_exports ndjson & LOAD+=($!)
leaving & LOAD+=($!)
sample_rss & LOAD+=($!)
curl -s -o /dev/null --limit-rate 2M --max-time "$SECONDS_PER" "$BASE/export" & SLOW=$!
read -r b_rps b50 b99 <<<"$(pages)"
for pid in "${LOAD[@]}"; do wait "$pid"; done
wait "$SLOW" || true
printf '  %8.0f req/s  p50 %.3f ms  p99 %.3f ms   (under load / alone: p50 %.2f, p99 %.2f, req/s %.2f)\n' \
  "$b_rps" "$b50" "$b99" "$(awk -v a="$a50" -v b="$b50" 'BEGIN { print b / a }')" \
  "$(awk -v a="$a99" -v b="$b99" 'BEGIN { print b / a }')" "$(awk -v a="$a_rps" -v b="$b_rps" 'BEGIN { print b / a }')"
echo "  full exports finished: $(grep -c csv "$RUN/exports" || true) CSV, $(grep -c ndjson "$RUN/exports" || true) NDJSON; exports left early: $(wc -l <"$RUN/left")"
echo "  pagegate RSS during the load: peak $(sort -n "$RUN/rss" | tail -1 | awk '{ printf "%.1f MiB", $1 / 1024 }'), VmHWM $(awk '/VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$PG_PID/status")"

# Every statement of a client that left is cancelled; the pools hold what they may.
sleep 3
active=$("${PSQL[@]}" -A -t -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pagegate-busy' AND state <> 'idle'")
held=$("${PSQL[@]}" -A -t -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pagegate-busy'")
echo "  after the load: $active statements still running, $held connections held (the pool allows 16)"
[ "$active" = 0 ] || { echo "statements still running after the load" >&2; exit 1; }
[ "$held" -le 16 ] || { echo "more connections than the pool allows" >&2; exit 1; }
start=$(date +%s.%N)
curl -fs -o /dev/null "$BASE?limit=100&id=gt.$((ROWS / 2))"
echo "  a page afterwards: $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", (e - s) * 1000 }') ms"
