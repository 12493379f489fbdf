#!/usr/bin/env bash
# Where pagegate's CPU goes on the hop: a build with frame pointers (`--profile bench`, line
# tables kept), in front of the hop's nginx backend (bench/peers/hop/), loaded by
# `wrk -t1 -c32` while `perf record -e cpu-clock -g` samples it (hardware counters are not
# available on these machines). Prints the top symbols by self time and by inclusive time,
# and leaves perf.data for `perf report -i`.
#
#   bench/profile.sh                  10 s, logs off, pagegate with 1 worker thread
#   SECONDS_PER=20 LOGS=true bench/profile.sh
#   TLS=1 bench/profile.sh            the listener on TLS (wrk over https)
#   REDIS=1 bench/profile.sh          with limits shared through a local redis-server (a
#                                     per-client rate and slots that never trip)
#   CALLGRAPH=dwarf FREQ=300 bench/profile.sh   call chains through libc's malloc too
#   LOCAL=1 bench/profile.sh          with this process's own limits (the same rate and slots)
#   PACE_MS=3 bench/profile.sh        each connection pausing 3 ms after each answer
#   REDIS=rate bench/profile.sh       the same with the shared rate alone (the exact mode:
#                                     one round trip a request)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${SECONDS_PER:-10}
LOGS=${LOGS:-false}
TLS=${TLS:-}
REDIS=${REDIS:-}
# Frame pointers by default; CALLGRAPH=dwarf (with a lower FREQ) also sees through libc.
CALLGRAPH=${CALLGRAPH:-fp}
FREQ=${FREQ:-2000}
HOPDIR=$(cd "${HOPDIR:-bench/peers/hop}" && pwd)

. bench/common.sh
need nginx wrk curl perf openssl
RUSTFLAGS="-C force-frame-pointers=yes" cargo build --profile bench --target-dir target/fp --quiet
BIN=$PWD/target/fp/release/pagegate
[ -x "$BIN" ] || BIN=$PWD/target/fp/bench/pagegate

start_run profile
OUT=${OUT:-$PWD/target/fp/perf.data}
peer backend.conf backend.conf
nginx -c "$RUN/backend.conf" -p "$RUN"
scheme=http tls=""
if [ -n "$TLS" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$RUN/tls.key" -out "$RUN/tls.crt" 2>/dev/null
  scheme=https tls="tls: {cert_file: '$RUN/tls.crt', key_file: '$RUN/tls.key'}"
fi
limits=""
if [ -n "${LOCAL:-}" ]; then
  limits=", limits: {rate: {per_client: {requests: 1000000000, per: 1s}}, concurrency: {per_client: 10000, total: 100000}}"
fi
if [ -n "$REDIS" ]; then
  need redis-server
  redis-server --bind 127.0.0.1 --port 19045 --save "" --appendonly no >"$RUN/logs/redis.log" 2>&1 &
  PIDS+=($!)
  limits=", limits: {store: redis, rate: {per_client: {requests: 1000000000, per: 1s}}"
  [ "$REDIS" = rate ] || limits="$limits, concurrency: {per_client: 10000, total: 100000}"
  limits="$limits}"
  tls="$tls
redis: {url: 'redis://127.0.0.1:19045', timeout: 50ms}"
fi
cat >"$RUN/pagegate.yaml" <<EOF
listen: 127.0.0.1:19044
access_log: $LOGS
max_connections: 4096
$tls
default: {action: pass, upstream: be$limits}
upstreams:
  be: {url: 'http://127.0.0.1:19001', pool_max_idle: 64}
EOF
"$BIN" run --config "$RUN/pagegate.yaml" --workers 1 >"$RUN/logs/pagegate.log" 2>&1 &
PIDS+=($!)
PG=$!
URL=$scheme://127.0.0.1:19044/
for _ in $(seq 50); do curl -kfs -o /dev/null "$URL" && break; sleep 0.1; done
curl -kfs -o /dev/null "$URL" || { echo "pagegate does not answer $URL" >&2; cat "$RUN/logs/pagegate.log" >&2; exit 1; }
wrk -t1 -c32 -d2s "$URL" >/dev/null # warm-up
perf record -e cpu-clock --call-graph "$CALLGRAPH" -F "$FREQ" -o "$OUT" -p "$PG" -- sleep "$SECONDS_PER" 2>/dev/null &
rec=$!
# PACE_MS: each connection waits this long after each answer (bench/pace.lua), below saturation.
export PACE_MS=${PACE_MS:-0}
wrk -t1 -c32 -d"${SECONDS_PER}s" -s bench/pace.lua "$URL" | awk '/Requests\/sec/ { print "wrk: " $2 " req/s" }'
wait "$rec" || true

echo
echo "self time, top 40 (perf report --no-children)"
perf report -i "$OUT" --no-children --sort symbol --stdio 2>/dev/null |
  grep -E '^ +[0-9.]+%' | head -40
echo
echo "inclusive time, top 40 (perf report --children)"
perf report -i "$OUT" --children --sort symbol --stdio 2>/dev/null |
  grep -E '^ +[0-9.]+% +[0-9.]+%' | head -40
echo
echo "perf.data: $OUT"
