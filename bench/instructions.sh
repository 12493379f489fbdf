#!/usr/bin/env bash
# Instructions a request on the hop, in user space: a figure that does not move with the
# machine's load, for changes too small for bench/hop.sh's rounds to show.
#
# Each target runs under `valgrind --tool=callgrind` in front of the hop's nginx backend
# (bench/peers/hop/). One keep-alive connection sends WARM GET requests of the 1.1 KB file,
# then, with callgrind counting, N more, one after another: the total over N is the cost of
# one request (with whatever the process does meanwhile on its own, such as timers). One
# connection keeps every request on the same path (no batching of readiness events).
# Kernel time is not counted: bench/hop.sh's CPU per request is the figure to quote against
# nginx; this one tells whether a change removed work.
#
#   bench/instructions.sh                 pagegate (logs off), nginx (the hop's proxy config,
#                                         one process), bare_hop and raw_hop
#   BASE=/path/to/pagegate bench/instructions.sh
#                                         also another build, as `base`
#   N=500 WARM=50 bench/instructions.sh
#   TARGETS="pagegate base" BASE=… bench/instructions.sh   a subset
#                                         (pagegate, base, nginx, bare, raw)
#   KEEP=1 bench/instructions.sh          keeps the callgrind files (for callgrind_annotate)
#                                         in target/instructions/
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
TARGETS=${TARGETS:-pagegate base nginx bare raw}
WARM=${WARM:-200}
HOPDIR=$(cd "${HOPDIR:-bench/peers/hop}" && pwd)

. bench/common.sh
need nginx curl valgrind python3
cargo build --release --quiet
cargo build --release --quiet --example bare_hop --example raw_hop
BIN=$PWD/target/release/pagegate

start_run instructions
OUT=$PWD/target/instructions
mkdir -p "$OUT"
peer backend.conf backend.conf
peer nginx-proxy.conf nginx-proxy.conf
nginx -c "$RUN/backend.conf" -p "$RUN"
cat >"$RUN/pagegate.yaml" <<EOF
listen: 127.0.0.1:19004
access_log: false
default: {action: pass, upstream: be}
upstreams:
  be: {url: 'http://127.0.0.1:19001', pool_max_idle: 64}
EOF
# N keep-alive GETs on one connection, each answer read whole and checked.
cat >"$RUN/load.py" <<'EOF'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
connection = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    connection.request("GET", "/")
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        sys.exit(f"answered {answer.status}")
EOF

# per_request NAME PORT COMMAND...: callgrind counts only while N requests are sent, after
# WARM others (the upstream connection made, every lazy start-up done).
per_request() {
  local name=$1 port=$2 pid total
  shift 2
  rm -f "$OUT/$name".*
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/$name.out" "$@" \
    >"$RUN/logs/$name.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  local up=""
  for _ in $(seq 150); do curl -fs -o /dev/null "http://127.0.0.1:$port/" && up=1 && break; sleep 0.2; done
  [ -n "$up" ] || { echo "$name did not answer on $port within 30 s" >&2; exit 1; }
  python3 "$RUN/load.py" "$port" "$WARM"
  callgrind_control -i on "$pid" >/dev/null 2>&1
  python3 "$RUN/load.py" "$port" "$N"
  callgrind_control -d "$pid" >/dev/null 2>&1
  callgrind_control -i off "$pid" >/dev/null 2>&1
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  # One dump: its `summary:` line (the same figure as its `totals:`).
  total=$(grep -h '^summary:' "$OUT/$name.out".* | awk '{ s += $2 } END { printf "%d", s }')
  printf '  %-9s %7d instructions a request\n' "$name" $((total / N))
  printf '%s\t%s\n' "$name" $((total / N)) >>"$RUN/results.tsv"
}

echo "instructions a request in user space (callgrind), $N requests on one connection after $WARM"
for target in $TARGETS; do
  case $target in
    pagegate) per_request pagegate 19004 "$BIN" run --config "$RUN/pagegate.yaml" --workers 1 ;;
    base) [ -z "${BASE:-}" ] || per_request base 19004 "$BASE" run --config "$RUN/pagegate.yaml" --workers 1 ;;
    # One process (no master), in the foreground, so callgrind counts the worker itself.
    nginx) per_request nginx 19002 nginx -c "$RUN/nginx-proxy.conf" -p "$RUN" -g 'daemon off; master_process off;' ;;
    bare) per_request bare 19006 target/release/examples/bare_hop 127.0.0.1:19006 127.0.0.1:19001 ;;
    raw) per_request raw 19007 target/release/examples/raw_hop 127.0.0.1:19007 127.0.0.1:19001 ;;
    *) echo "unknown target $target (pagegate, base, nginx, bare, raw)" >&2; exit 1 ;;
  esac
done
awk -F'\t' '{ v[$1] = $2 } END {
  if (!("pagegate" in v)) exit
  if ("nginx" in v) printf "  pagegate / nginx %.2f\n", v["pagegate"] / v["nginx"]
  if ("nginx" in v && "raw" in v) printf "  raw / nginx %.2f\n", v["raw"] / v["nginx"]
  if ("bare" in v) printf "  pagegate / bare %.2f\n", v["pagegate"] / v["bare"]
  if ("raw" in v) printf "  pagegate / raw %.2f\n", v["pagegate"] / v["raw"]
  if ("bare" in v && "raw" in v) printf "  bare / raw %.2f\n", v["bare"] / v["raw"]
  if ("base" in v) printf "  pagegate / base %.3f\n", v["pagegate"] / v["base"]
}' "$RUN/results.tsv"
[ -n "${KEEP:-}" ] || rm -f "$OUT"/*.out*
