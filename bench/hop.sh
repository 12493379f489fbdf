#!/usr/bin/env bash
# The cost of one proxy hop: pagegate against nginx and haproxy, same machine, same run.
#
# An nginx backend serves a 1.1 KB JSON file (bench/peers/hop/). wrk -t1 -c32 fetches it
# directly, through nginx (proxy_http_version 1.1, upstream keepalive, one worker), through
# haproxy (http-reuse always, one thread) and through pagegate (pooled keep-alive), in turns,
# for ROUNDS rounds; with access logs off, then on (nginx: a file with buffer=64k; pagegate: its
# default access log, stdout to a file). Each proxy's CPU time (user + system, from /proc) over
# its requests is the figure that does not depend on thread counts. Then a 1 GiB body through
# each, with pagegate's peak RSS.
#
#   bench/hop.sh                      5 rounds of 5 s, pagegate with 1 worker thread
#   ROUNDS=3 SECONDS_PER=3 bench/hop.sh
#   WORKERS=2 bench/hop.sh            pagegate with 2 worker threads
#   BASE=/path/to/pagegate bench/hop.sh
#                                     also runs another build (say main's) as `base`, in the
#                                     same rounds, and prints this build's CPU per request
#                                     over it, logs off and on
#   BARE=1 bench/hop.sh               also runs examples/bare_hop.rs as `bare`: hyper-util's
#                                     server and pooled client with nothing of pagegate's
#                                     (logs off), the floor of the libraries pagegate uses
#   RAW=1 bench/hop.sh                also runs examples/raw_hop.rs as `raw`: one tokio task per
#                                     client connection, heads parsed with httparse, its own
#                                     upstream connection, no HTTP library: the floor of a hop
#                                     on tokio (logs off)
#   TRACES=1 BASE=target/release/pagegate bench/hop.sh
#                                     this build with `traces` on (every request sampled,
#                                     spans exported to an nginx that answers 204), `base`
#                                     without: the cost of tracing
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SECONDS_PER=${SECONDS_PER:-5}
WORKERS=${WORKERS:-1}
BIG_ROUNDS=${BIG_ROUNDS:-3}
HOPDIR=$(cd "${HOPDIR:-bench/peers/hop}" && pwd)

. bench/common.sh
need nginx haproxy wrk curl
cargo build --release --quiet
BIN=$PWD/target/release/pagegate

start_run hop

# The peer configs, as shipped, with their placeholders filled in.
peer backend.conf backend.conf
peer nginx-proxy.conf nginx.conf
peer haproxy.cfg haproxy.cfg
# nginx with its access log on: a file, buffered as a production nginx would be.
sed -e "s#access_log off;#access_log $RUN/nginx-access.log combined buffer=64k;#" \
  -e "s#19002#19012#" -e "s#proxy.pid#proxy-log.pid#" "$RUN/nginx.conf" >"$RUN/nginx-log.conf"
truncate -s 1G "$RUN/big.bin"

pagegate_conf() { # $1 port, $2 access_log, $3 extra top-level YAML
  cat >"$RUN/pagegate-$1.yaml" <<EOF
listen: 127.0.0.1:$1
access_log: $2
${3:-}
max_connections: 4096
default: {action: pass, upstream: be}
upstreams:
  be: {url: 'http://127.0.0.1:19001', pool_max_idle: 64}
EOF
}
TRACES=${TRACES:-}
TRACED=""
if [ -n "$TRACES" ]; then
  # A collector stand-in: takes every OTLP export and answers 204.
  cat >"$RUN/sink.conf" <<EOF
worker_processes 1;
pid $RUN/sink.pid;
error_log $RUN/logs/sink-error.log;
events {}
http { access_log off; client_body_buffer_size 1m; server { listen 127.0.0.1:19020; location / { return 204; } } }
EOF
  nginx -c "$RUN/sink.conf" -p "$RUN"
  TRACED="traces: {endpoint: 'http://127.0.0.1:19020/v1/traces'}"
fi
pagegate_conf 19004 false "$TRACED"
pagegate_conf 19014 true "$TRACED"
BASE=${BASE:-}
if [ -n "$BASE" ]; then
  pagegate_conf 19005 false
  pagegate_conf 19015 true
fi

nginx -c "$RUN/backend.conf" -p "$RUN"
nginx -c "$RUN/nginx.conf" -p "$RUN"
nginx -c "$RUN/nginx-log.conf" -p "$RUN"
haproxy -f "$RUN/haproxy.cfg" -D -p "$RUN/haproxy.pid"
"$BIN" run --config "$RUN/pagegate-19004.yaml" --workers "$WORKERS" >"$RUN/logs/pagegate-off.log" 2>&1 &
PIDS+=($!)
PG_OFF=$!
"$BIN" run --config "$RUN/pagegate-19014.yaml" --workers "$WORKERS" >"$RUN/logs/pagegate-access.log" 2>&1 &
PIDS+=($!)
PG_ON=$!
PORTS="19001 19002 19012 19003 19004 19014"
TARGETS="direct nginx haproxy pagegate nginx-log pagegate-log"
if [ -n "$BASE" ]; then
  "$BASE" run --config "$RUN/pagegate-19005.yaml" --workers "$WORKERS" >"$RUN/logs/base-off.log" 2>&1 &
  PIDS+=($!)
  BASE_OFF=$!
  "$BASE" run --config "$RUN/pagegate-19015.yaml" --workers "$WORKERS" >"$RUN/logs/base-access.log" 2>&1 &
  PIDS+=($!)
  BASE_ON=$!
  PORTS="$PORTS 19005 19015"
  TARGETS="$TARGETS base base-log"
fi
# floor TARGET PORT: examples/TARGET_hop.rs built and started on PORT, as a target of the
# rounds; its pid in FLOOR_PID.
floor() {
  cargo build --release --quiet --example "$1_hop"
  "target/release/examples/$1_hop" "127.0.0.1:$2" 127.0.0.1:19001 >"$RUN/logs/$1.log" 2>&1 &
  PIDS+=($!)
  FLOOR_PID=$!
  PORTS="$PORTS $2"
  TARGETS="$TARGETS $1"
}
BARE=${BARE:-}
if [ -n "$BARE" ]; then
  floor bare 19006
  BARE_PID=$FLOOR_PID
fi
RAW=${RAW:-}
if [ -n "$RAW" ]; then
  floor raw 19007
  RAW_PID=$FLOOR_PID
fi
for port in $PORTS; do
  for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

# The processes whose CPU time counts for each target (nginx: master and workers).
pids_of() {
  case $1 in
    direct) echo "" ;;
    nginx) echo "$(cat "$RUN/proxy.pid") $(pgrep -P "$(cat "$RUN/proxy.pid")" | tr '\n' ' ')" ;;
    nginx-log) echo "$(cat "$RUN/proxy-log.pid") $(pgrep -P "$(cat "$RUN/proxy-log.pid")" | tr '\n' ' ')" ;;
    haproxy) cat "$RUN/haproxy.pid" ;;
    pagegate) echo "$PG_OFF" ;;
    pagegate-log) echo "$PG_ON" ;;
    base) echo "$BASE_OFF" ;;
    base-log) echo "$BASE_ON" ;;
    bare) echo "$BARE_PID" ;;
    raw) echo "$RAW_PID" ;;
  esac
}
port_of() {
  case $1 in
    direct) echo 19001 ;; nginx) echo 19002 ;; nginx-log) echo 19012 ;;
    haproxy) echo 19003 ;; pagegate) echo 19004 ;; pagegate-log) echo 19014 ;;
    base) echo 19005 ;; base-log) echo 19015 ;; bare) echo 19006 ;; raw) echo 19007 ;;
  esac
}

RESULTS=$RUN/results.tsv

echo "pagegate: $WORKERS worker thread(s); nginx: 1 worker; haproxy: 1 thread; wrk -t1 -c32, ${SECONDS_PER}s each, $ROUNDS rounds"
for target in $TARGETS; do # warm-up
  wrk -t1 -c32 -d1s "http://127.0.0.1:$(port_of "$target")/" >/dev/null
done
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  # Alternate the order so no target always runs first after a pause.
  if [ $((round % 2)) = 1 ]; then order=$TARGETS
  else order=$(tr ' ' '\n' <<<"$TARGETS" | tac | tr '\n' ' '); fi
  for target in $order; do measure "$target" "$round"; done
done

echo
# shellcheck disable=SC2086
medians 13 $TARGETS
echo
echo "pagegate / nginx, per round: median (min–max); at or below 1.00 meets the target"
echo "  logs off: cpu/req $(ratio pagegate nginx 6)   p99 $(ratio pagegate nginx 5)   req/s $(ratio pagegate nginx 3)"
echo "  logs on:  cpu/req $(ratio pagegate-log nginx-log 6)   p99 $(ratio pagegate-log nginx-log 5)   req/s $(ratio pagegate-log nginx-log 3)"
echo "pagegate / haproxy (logs off): cpu/req $(ratio pagegate haproxy 6)   p99 $(ratio pagegate haproxy 5)"
if [ -n "$BASE" ]; then
  echo "this build / base ($BASE), per round: median (min–max)"
  echo "  logs off: cpu/req $(ratio pagegate base 6)   p99 $(ratio pagegate base 5)   req/s $(ratio pagegate base 3)"
  echo "  logs on:  cpu/req $(ratio pagegate-log base-log 6)   p99 $(ratio pagegate-log base-log 5)   req/s $(ratio pagegate-log base-log 3)"
fi
if [ -n "$BARE" ]; then
  echo "the libraries' floor (bare_hop, logs off), per round: median (min–max)"
  echo "  bare / nginx:     cpu/req $(ratio bare nginx 6)   p99 $(ratio bare nginx 5)   req/s $(ratio bare nginx 3)"
  echo "  pagegate / bare:  cpu/req $(ratio pagegate bare 6)   p99 $(ratio pagegate bare 5)"
fi
if [ -n "$RAW" ]; then
  echo "a hop on tokio with no HTTP library (raw_hop, logs off), per round: median (min–max)"
  echo "  raw / nginx:      cpu/req $(ratio raw nginx 6)   p99 $(ratio raw nginx 5)   req/s $(ratio raw nginx 3)"
  echo "  pagegate / raw:   cpu/req $(ratio pagegate raw 6)   p99 $(ratio pagegate raw 5)"
fi
lines=$(grep -c '"request"\|request ' "$RUN/logs/pagegate-access.log" || true)
echo "pagegate access log: $lines lines written, $(wc -c <"$RUN/logs/pagegate-access.log") bytes"

echo
echo "1 GiB pass-through ($BIG_ROUNDS rounds), MB/s: median (min–max)"
: >"$RUN/big.tsv"
curl -s -o /dev/null "http://127.0.0.1:19001/big" # the file into the page cache
rss_before=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$PG_OFF/status")
for round in $(seq "$BIG_ROUNDS"); do
  for target in direct nginx pagegate; do
    out=$(curl -s -o /dev/null -w '%{speed_download} %{http_code}' "http://127.0.0.1:$(port_of "$target")/big")
    speed=${out% *} code=${out#* }
    if [ "$code" != 200 ]; then echo "$target: /big answered $code" >&2; exit 1; fi
    printf '%s\t%s\t%s\n' "$target" "$round" "$speed" >>"$RUN/big.tsv"
  done
done
for target in direct nginx pagegate; do
  printf '  %-9s %s\n' "$target" "$(awk -F'\t' -v t="$target" '$1 == t { print $3 / 1e6 }' "$RUN/big.tsv" | sort -g |
    awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f (%.0f–%.0f)", m, v[1], v[NR] }')"
done
awk -F'\t' '$1 == "pagegate" { p[$2] = $3 } $1 == "nginx" { n[$2] = $3 } END { for (r in p) print p[r] / n[r] }' "$RUN/big.tsv" | sort -g |
  awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "  pagegate / nginx throughput: %.2f (%.2f–%.2f)\n", m, v[1], v[NR] }'
echo "  pagegate peak RSS: $rss_before MiB after the small-request rounds, $(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$PG_OFF/status") MiB after $BIG_ROUNDS GiB streamed"
