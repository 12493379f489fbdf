#!/usr/bin/env bash
# The query service against its peers, on a generated 5,000,000-row table
# (bench/peers/events_5m.sql), all in one run on a PostgreSQL cluster this script starts:
#   1. a 100-row keyset page at depth 0 and at depth 4,000,000 (wrk -c1, p50/p99), through
#      pagegate and through the article's FastAPI keyset page (bench/peers/fastapi_events.py);
#   2. a CSV export of every row: pagegate against `psql \copy (SELECT … ORDER BY id) TO
#      '/dev/null' CSV` and against the FastAPI StreamingResponse export; pagegate's peak RSS;
#   3. an NDJSON export against the CSV export;
#   4. both exports read with keyset queries (`via: queries`) against COPY (the default);
#   5. the CSV export one chunk after the other (`parallel: 1`) against parallel ranges (the
#      default, 2).
#
#   bench/pg.sh                  3 export rounds
#   ROUNDS=1 ROWS=1000000 bench/pg.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
ROWS=${ROWS:-5000000}
PEERS=$(cd "${PEERS:-bench/peers}" && pwd)
. bench/common.sh
need curl wrk python3
need_postgres
cargo build --release --quiet
BIN=$PWD/target/release/pagegate

RUN=$(mktemp -d /tmp/pagegate-pg.XXXXXX)
chmod 755 "$RUN"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  pg_stop
  wait 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT

# The FastAPI peer's environment, in a virtualenv of its own.
python3 -m venv "$RUN/venv"
"$RUN/venv/bin/pip" install -q fastapi uvicorn asyncpg orjson

pg_start 19030
echo "loading $ROWS rows (events_5m.sql) …"
start=$(date +%s.%N)
sed -e "s/generate_series(1, 5000000)/generate_series(1, $ROWS)/" "$PEERS/events_5m.sql" | "${PSQL[@]}" >/dev/null
echo "  loaded in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"

cat >"$RUN/pagegate.yaml" <<EOF
listen: 127.0.0.1:19032
access_log: false
cursors: {keys: [{id: 1, secret: bench-only-secret-bench-only-secret-0001}]}
postgres: {main: {url: '$PG_URL', pool_size: 8, statement_timeout: 60s}}
routes:
  - name: events
    path: /db/events
    table:
      database: main
      name: events
      columns: [id, status, created_at, user_id, message]
      key: [id]
      filters: {id: [gt]}
  - name: events-queries
    path: /db/queries
    table:
      database: main
      name: events
      columns: [id, status, created_at, user_id, message]
      key: [id]
      export: {via: queries}
  - name: events-serial
    path: /db/serial
    table:
      database: main
      name: events
      columns: [id, status, created_at, user_id, message]
      key: [id]
      export: {parallel: 1}
EOF
"$BIN" run --workers 1 --config "$RUN/pagegate.yaml" >"$RUN/pagegate.log" 2>&1 &
PIDS+=($!)
PG_PID=$!
# `exec`: the recorded pid is uvicorn's own, so the cleanup stops it.
(cd "$PEERS" && DATABASE_URL=postgresql://postgres@127.0.0.1:19030/postgres \
  exec "$RUN/venv/bin/uvicorn" fastapi_events:app --port 19031 --log-level warning >"$RUN/fastapi.log" 2>&1) &
PIDS+=($!)
for port in 19031 19032; do
  path=/events/keyset; [ "$port" = 19032 ] && path="/db/events?limit=1"
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port$path" && break; sleep 0.2; done
done
curl -fs -o /dev/null "http://127.0.0.1:19032/db/events?limit=1" || { cat "$RUN/pagegate.log"; exit 1; }

to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
latency() { # $1 url → "p50 p99" in ms
  local out
  out=$(wrk -t1 -c1 -d5s --latency "$1")
  if grep -q "Non-2xx" <<<"$out"; then echo "$1: non-2xx answers" >&2; exit 1; fi
  echo "$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")") $(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
}
DEEP=$((ROWS * 4 / 5))
echo
echo "100-row page, depth 0 and depth $DEEP (wrk -t1 -c1, 5 s each): p50 / p99 ms"
read -r a50 a99 <<<"$(latency "http://127.0.0.1:19032/db/events?limit=100")"
read -r b50 b99 <<<"$(latency "http://127.0.0.1:19032/db/events?limit=100&id=gt.$DEEP")"
read -r c50 c99 <<<"$(latency "http://127.0.0.1:19031/events/keyset?after=0&limit=100")"
read -r d50 d99 <<<"$(latency "http://127.0.0.1:19031/events/keyset?after=$DEEP&limit=100")"
printf '  pagegate  depth 0 %s / %s   depth %s %s / %s   depth ratio %.2f\n' "$a50" "$a99" "$DEEP" "$b50" "$b99" "$(awk -v a="$a50" -v b="$b50" 'BEGIN { print b / a }')"
printf '  FastAPI   depth 0 %s / %s   depth %s %s / %s   depth ratio %.2f\n' "$c50" "$c99" "$DEEP" "$d50" "$d99" "$(awk -v a="$c50" -v b="$d50" 'BEGIN { print b / a }')"
printf '  pagegate / FastAPI p50 at depth %s: %.2f\n' "$DEEP" "$(awk -v a="$b50" -v b="$d50" 'BEGIN { print a / b }')"

seconds() { # time of a command, in seconds
  local start
  start=$(date +%s.%N)
  "$@" >/dev/null
  awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }'
}
fetch() { # $1 url: the body's lines must be the rows (+1 header for CSV)
  local lines
  lines=$(curl -fs "$1" | wc -l)
  [ "$lines" -ge "$ROWS" ] || { echo "$1: $lines lines" >&2; exit 1; }
}
echo
echo "export of all $ROWS rows, $ROUNDS rounds, seconds (rows/s)"
: >"$RUN/export.tsv"
for round in $(seq "$ROUNDS"); do
  for target in psql pagegate-csv pagegate-ndjson fastapi queries-csv queries-ndjson serial-csv; do
    case $target in
      psql) t=$(seconds "${PSQL[@]}" -c "\\copy (SELECT id, status, created_at, user_id, message FROM events ORDER BY id) TO '/dev/null' CSV") ;;
      pagegate-csv) t=$(seconds fetch "http://127.0.0.1:19032/db/events/export?format=csv") ;;
      pagegate-ndjson) t=$(seconds fetch "http://127.0.0.1:19032/db/events/export?format=ndjson") ;;
      fastapi) t=$(seconds fetch "http://127.0.0.1:19031/export") ;;
      queries-csv) t=$(seconds fetch "http://127.0.0.1:19032/db/queries/export?format=csv") ;;
      queries-ndjson) t=$(seconds fetch "http://127.0.0.1:19032/db/queries/export?format=ndjson") ;;
      serial-csv) t=$(seconds fetch "http://127.0.0.1:19032/db/serial/export?format=csv") ;;
    esac
    printf '%s\t%s\t%s\n' "$target" "$round" "$t" >>"$RUN/export.tsv"
    printf '  round %s %-16s %6.2f s (%.2f M rows/s)\n' "$round" "$target" "$t" "$(awk -v t="$t" -v n="$ROWS" 'BEGIN { print n / t / 1e6 }')"
  done
done
median() { awk -F'\t' -v t="$1" '$1 == t { print $3 }' "$RUN/export.tsv" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
P=$(median psql) C=$(median pagegate-csv) N=$(median pagegate-ndjson) F=$(median fastapi)
QC=$(median queries-csv) QN=$(median queries-ndjson) S=$(median serial-csv)
echo "medians: psql $P s, pagegate CSV $C s, pagegate NDJSON $N s, FastAPI $F s, via queries: CSV $QC s, NDJSON $QN s, CSV parallel 1: $S s"
printf '  pagegate CSV / psql \\copy (rows/s):  %.2f   (target >= 1.0)\n' "$(awk -v a="$C" -v b="$P" 'BEGIN { print b / a }')"
printf '  pagegate CSV / FastAPI (rows/s):     %.2f   (target >= 4)\n' "$(awk -v a="$C" -v b="$F" 'BEGIN { print b / a }')"
printf '  pagegate NDJSON / CSV (rows/s):      %.2f   (target >= 0.8)\n' "$(awk -v a="$N" -v b="$C" 'BEGIN { print b / a }')"
printf '  COPY / queries, CSV (rows/s):        %.2f\n' "$(awk -v a="$C" -v b="$QC" 'BEGIN { print b / a }')"
printf '  COPY / queries, NDJSON (rows/s):     %.2f\n' "$(awk -v a="$N" -v b="$QN" 'BEGIN { print b / a }')"
printf '  parallel 2 / 1, CSV (rows/s):        %.2f\n' "$(awk -v a="$C" -v b="$S" 'BEGIN { print b / a }')"
echo "  pagegate peak RSS: $(awk '/VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$PG_PID/status") (target < 64 MiB)"
