#!/usr/bin/env bash
# What limits cost on the hop: pagegate with no limits, with local limits that never trip (a
# per-client rate and per-client and total slots, all far above the load), and with the same
# limits shared through a local redis-server (`store: redis`) and through a Redis Cluster of
# three masters (`redis: {cluster: …}`), then a shared rate alone, exact (`rate`: one round
# trip a request) and batched (`batched`: `batch: 50ms`), and the same rate decided by an
# Envoy rate-limit service (`rls`: examples/rls_server), in turns, for ROUNDS rounds, in
# front of the nginx backend of bench/peers/hop/. wrk -t1 -c32; each pagegate's CPU time
# per request (user + system, from /proc) and wrk's p50/p99; then no limits and the exact
# rate again with every connection pausing PACE_MS after each answer (nearer equal load),
# latency on one idle connection, and Redis's own floor for the exact call.
#
#   bench/limits.sh                   5 rounds of 5 s
#   ROUNDS=3 SECONDS_PER=3 bench/limits.sh
#   TARGETS="none rate" PACE_MS=5 bench/limits.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SECONDS_PER=${SECONDS_PER:-5}
HOPDIR=$(cd "${HOPDIR:-bench/peers/hop}" && pwd)

. bench/common.sh
need nginx wrk redis-server redis-cli redis-benchmark curl
cargo build --release --quiet
cargo build --release --quiet --example rls_server
BIN=$PWD/target/release/pagegate

start_run limits
peer backend.conf backend.conf
nginx -c "$RUN/backend.conf" -p "$RUN"
redis-server --bind 127.0.0.1 --port 19024 --save "" --appendonly no >"$RUN/logs/redis.log" 2>&1 &
PIDS+=($!)
# A cluster of three masters (no replicas: the path measured is the same).
mkdir -p "$RUN/cluster"
for port in 19031 19032 19033; do
  redis-server --bind 127.0.0.1 --port "$port" --cluster-enabled yes --cluster-config-file "nodes-$port.conf" \
    --dir "$RUN/cluster" --save "" --appendonly no >"$RUN/logs/cluster-$port.log" 2>&1 &
  PIDS+=($!)
done
for port in 19031 19032 19033; do
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create 127.0.0.1:19031 127.0.0.1:19032 127.0.0.1:19033 --cluster-yes >"$RUN/logs/cluster-create.log"
for _ in $(seq 100); do redis-cli -p 19031 cluster info | grep -q cluster_state:ok && break; sleep 0.1; done

# An Envoy rate-limit service (examples/rls_server: Limitador's limiter behind tonic) whose
# one limit, per client of the default route, never trips.
cat >"$RUN/rls-limits.json" <<'EOF'
[{"namespace": "pagegate", "max_value": 1000000000, "seconds": 1,
  "conditions": ["descriptors[0].route == '-'"], "variables": ["descriptors[0].client"]}]
EOF
target/release/examples/rls_server 127.0.0.1:19028 "$RUN/rls-limits.json" >"$RUN/logs/rls.log" 2>&1 &
PIDS+=($!)

pagegate_conf() { # $1 port, $2 limits (or empty), $3 where Redis is (default: the one server)
  {
    echo "listen: 127.0.0.1:$1"
    echo "access_log: false"
    echo "rate_limit_service: {address: 'http://127.0.0.1:19028', domain: pagegate, timeout: 50ms}"
    echo "redis: {${3:-url: 'redis://127.0.0.1:19024'}, timeout: 50ms}"
    echo "upstreams: {be: {url: 'http://127.0.0.1:19001', pool_max_idle: 64}}"
    if [ -n "$2" ]; then
      echo "default: {action: pass, upstream: be, limits: $2}"
    else
      echo "default: {action: pass, upstream: be}"
    fi
  } >"$RUN/pagegate-$1.yaml"
}
NEVER="rate: {per_client: {requests: 1000000000, per: 1s}}, concurrency: {per_client: 10000, total: 100000}"
pagegate_conf 19021 ""
pagegate_conf 19022 "{$NEVER}"
pagegate_conf 19023 "{store: redis, on_redis_error: closed, $NEVER}"
pagegate_conf 19025 "{store: redis, on_redis_error: closed, $NEVER}" "cluster: ['redis://127.0.0.1:19031']"
pagegate_conf 19026 "{store: redis, on_redis_error: closed, rate: {per_client: {requests: 1000000000, per: 1s}}}"
pagegate_conf 19027 "{store: redis, batch: 50ms, on_redis_error: closed, rate: {per_client: {requests: 1000000000, per: 1s}}}"
pagegate_conf 19029 "{store: envoy_rls, on_store_error: closed}"
# TARGETS="none rate" bench/limits.sh measures some of them only.
TARGETS=${TARGETS:-"none local redis cluster rate batched rls"}
declare -A PID PORT=([none]=19021 [local]=19022 [redis]=19023 [cluster]=19025 [rate]=19026 [batched]=19027 [rls]=19029)
for target in $TARGETS; do
  "$BIN" run --config "$RUN/pagegate-${PORT[$target]}.yaml" --workers 1 >"$RUN/logs/$target.log" 2>&1 &
  PIDS+=($!)
  PID[$target]=$!
done
for port in 19001 19021 19022 19023 19025 19026 19027 19029; do
  for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

pids_of() { echo "${PID[$1]}"; }
port_of() { echo "${PORT[$1]}"; }
RESULTS=$RUN/results.tsv

echo "pagegate: 1 worker thread each; wrk -t1 -c32, ${SECONDS_PER}s each, $ROUNDS rounds"
for target in $TARGETS; do wrk -t1 -c32 -d1s "http://127.0.0.1:${PORT[$target]}/" >/dev/null; done
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  # Rotate the order, so no target always runs first or last.
  order=$(tr ' ' '\n' <<<"$TARGETS" | awk -v r="$round" '{ t[NR - 1] = $0 } END { for (i = 0; i < NR; i++) print t[(i + r) % NR] }' | tr '\n' ' ')
  for target in $order; do measure "$target" "$round"; done
done

echo
# shellcheck disable=SC2086
medians 7 $TARGETS
echo
echo "per round, against no limits: median (min–max); the local target is 1.05 or less"
echo "  local limits: cpu/req $(ratio local none 6)   p50 $(ratio local none 4)   p99 $(ratio local none 5)"
echo "  redis limits: cpu/req $(ratio redis none 6)   p50 $(ratio redis none 4)   p99 $(ratio redis none 5)"
echo "  cluster:      cpu/req $(ratio cluster none 6)   p50 $(ratio cluster none 4)   p99 $(ratio cluster none 5)"
echo "  redis, rate only: cpu/req $(ratio rate none 6)   p50 $(ratio rate none 4)   p99 $(ratio rate none 5)"
echo "  batched rate:     cpu/req $(ratio batched none 6)   p50 $(ratio batched none 4)   p99 $(ratio batched none 5)"
echo "  rate-limit service (envoy_rls): cpu/req $(ratio rls none 6)   p50 $(ratio rls none 4)   p99 $(ratio rls none 5)"

# CPU per request nearer equal load. The closed loop above runs each target as fast as it
# answers, so one that waits for Redis runs fewer requests a second, and each costs it more:
# fewer requests share each wake-up and system call, and the two cores also run Redis. Here
# every connection waits PACE_MS after each answer (wrk's delay, whole milliseconds), so no
# limits and the exact rate run below saturation at nearer rates; their req/s are printed.
export PACE_MS=${PACE_MS:-3}
if [[ " $TARGETS " == *" none "* && " $TARGETS " == *" rate "* ]]; then
  echo
  echo "paced (each connection waits ${PACE_MS} ms after each answer), $ROUNDS rounds"
  CLOSED=$RESULTS
  RESULTS=$RUN/paced.tsv
  for round in $(seq "$ROUNDS"); do
    order="none rate"
    [ $((round % 2)) = 0 ] && order="rate none"
    for target in $order; do measure "$target" "$round" -s bench/pace.lua; done
  done
  medians 7 none rate
  echo "  redis, rate only, paced: cpu/req $(ratio rate none 6)   req/s $(ratio rate none 3)"
  RESULTS=$CLOSED
fi

# Latency without queueing: one connection, one request at a time.
echo
echo "one connection (wrk -t1 -c1, ${SECONDS_PER}s each, $ROUNDS rounds): p50 / p99 ms, medians"
: >"$RUN/single.tsv"
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    out=$(wrk -t1 -c1 -d"${SECONDS_PER}s" --latency "http://127.0.0.1:${PORT[$target]}/")
    printf '%s\t%s\t%s\t%s\n' "$target" "$round" "$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")" \
      "$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")" >>"$RUN/single.tsv"
  done
done
for target in $TARGETS; do
  printf '  %-7s p50 %s   p99 %s\n' "$target" \
    "$(awk -F'\t' -v t="$target" '$1 == t { print $3 }' "$RUN/single.tsv" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')" \
    "$(awk -F'\t' -v t="$target" '$1 == t { print $4 }' "$RUN/single.tsv" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
done

# The floor under the exact mode's idle latency: one round trip to the same redis-server from
# its own C client, one call at a time — a PING, and the exact rate's TAKE script (read from
# the source, one rate key) — against what the `rate` target adds over `none` above.
median_of() { # $1 target, $2 column of single.tsv
  awk -F'\t' -v t="$1" -v c="$2" '$1 == t { print $c }' "$RUN/single.tsv" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
TAKE=$(cat src/limit/shared/scripts/take.lua)
SHA=$(redis-cli -p 19024 SCRIPT LOAD "$TAKE")
floor() { redis-benchmark -p 19024 -c 1 -n 20000 --csv "$@" | awk -F'"' 'NR == 2 { print $10 }'; }
ping_p50=$(floor PING)
# One request (1 key, 5 arguments): one rate key, its interval and tolerance, a lease id, a TTL.
take_p50=$(floor EVALSHA "$SHA" 1 bench-floor 1 1 5 1 1 1000000 bench-lease 10000)
added=$(awk -v r="$(median_of rate 3)" -v n="$(median_of none 3)" 'BEGIN { printf "%.3f", r - n }')
echo
echo "redis floor (redis-benchmark -c1, p50 ms): PING $ping_p50, TAKE $take_p50"
echo "  exact rate adds $added ms at p50 on one connection; over the TAKE floor: $(awk -v a="$added" -v f="$take_p50" 'BEGIN { printf "%.3f", a - f }') ms"
