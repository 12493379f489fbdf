# Sourced by the bench scripts.

# need TOOL...: installs the missing ones with apt-get when run as root (each tool's Debian
# package has its name), else stops, naming them.
need() {
  local missing=() tool
  for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "$(basename "$0") needs: ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
}

# peer FILE DEST: a peer config of $HOPDIR, its placeholders filled in, written to $RUN/DEST.
peer() { sed -e "s#PIDDIR#$RUN#g" -e "s#HOPDIR#$HOPDIR#g" "$HOPDIR/$1" >"$RUN/$2"; }

# ticks PID...: user + system clock ticks of the given processes.
ticks() {
  local total=0
  for pid in "$@"; do
    read -r -a f <"/proc/$pid/stat"
    total=$((total + f[13] + f[14]))
  done
  echo "$total"
}
# to_ms LATENCY: a wrk latency such as 512.00us, 1.20ms, 1.01s, in ms.
to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

# The rows of $RESULTS are: target, round, req/s, p50 ms, p99 ms, cpu us/req (tab-separated).
# summary TARGET COLUMN: the median (min–max) of a column (3 rps, 4 p50, 5 p99, 6 cpu).
summary() {
  awk -F'\t' -v t="$1" -v c="$2" '$1 == t { print $c }' "$RESULTS" | sort -g |
    awk -v f="$([ "$2" = 3 ] && echo '%.0f' || echo '%.3g')" '{ v[NR] = $1 } END {
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf f " (" f "–" f ")", m, v[1], v[NR] }'
}
# ratio A B COLUMN: the per-round ratio A/B of a column, median (min–max).
ratio() {
  awk -F'\t' -v a="$1" -v b="$2" -v c="$3" '
    $1 == a { x[$2] = $c } $1 == b { y[$2] = $c }
    END { for (r in x) if (y[r] > 0) print x[r] / y[r] }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f (%.2f–%.2f)", m, v[1], v[NR] }'
}

# measure TARGET ROUND [WRK ARG...]: one wrk run (-t1 -c32 unless the args say otherwise)
# against `url_of TARGET`, the CPU time of `pids_of TARGET` over its requests (both defined by
# the script), appended to $RESULTS and printed. Stops on any non-2xx answer.
measure() {
  local target=$1 round=$2 pids before after out requests rps p50 p99 cpu
  shift 2
  # shellcheck disable=SC2046
  pids=$(pids_of "$target")
  # shellcheck disable=SC2086
  before=$(ticks $pids)
  out=$(wrk -t1 -c32 -d"${SECONDS_PER}s" --latency "$@" "$(url_of "$target")")
  # shellcheck disable=SC2086
  after=$(ticks $pids)
  requests=$(awk '/requests in/ { print $1 }' <<<"$out")
  rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
  p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  if [ -n "$pids" ]; then
    cpu=$(awk -v t=$((after - before)) -v n="$requests" -v hz="$TICK" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
  else
    cpu=0
  fi
  if grep -q "Non-2xx" <<<"$out"; then echo "$target: non-2xx answers" >&2; exit 1; fi
  grep "Socket errors" <<<"$out" | sed "s/^/  $target: /" >&2 || true
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$round" "$rps" "$p50" "$p99" "$cpu" >>"$RESULTS"
  printf '  %-13s %9.0f req/s  p50 %6.3f ms  p99 %6.3f ms  cpu %5.1f us/req\n' "$target" "$rps" "$p50" "$p99" "$cpu"
}
# url_of TARGET: where measure sends wrk (scripts may define their own).
url_of() { echo "http://127.0.0.1:$(port_of "$1")/"; }

# start_run NAME: a scratch directory $RUN (logs in $RUN/logs, TICK the clock rate) that the
# exit removes, after stopping every pid in PIDS, haproxy and every nginx started from a
# $RUN/*.conf.
start_run() {
  RUN=$(mktemp -d "/tmp/pagegate-$1.XXXXXX")
  chmod 755 "$RUN" # nginx workers run as another user and read files here
  PIDS=()
  trap stop_run EXIT
  mkdir -p "$RUN/logs"
  TICK=$(getconf CLK_TCK)
}
stop_run() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -e "$RUN/haproxy.pid" ] && kill "$(cat "$RUN/haproxy.pid")" 2>/dev/null || true
  for conf in "$RUN"/*.conf; do
    [ -e "$conf" ] && nginx -c "$conf" -p "$RUN" -s stop 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$RUN"
}

# medians WIDTH TARGET...: the medians (min–max) of $RESULTS, one line per target.
medians() {
  local width=$1 target
  shift
  echo "medians over $ROUNDS rounds (min–max)"
  printf "%-${width}s %-26s %-26s %-26s %s\n" target "req/s" "p50 ms" "p99 ms" "cpu us/req"
  for target in "$@"; do
    printf "%-${width}s %-26s %-26s %-26s %s\n" "$target" "$(summary "$target" 3)" "$(summary "$target" 4)" \
      "$(summary "$target" 5)" "$(summary "$target" 6)"
  done
}

# need_postgres: a PostgreSQL server's binaries (installed when root), in $PGBIN.
need_postgres() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need postgresql
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
}
# as_pg CMD...: runs a PostgreSQL command as the postgres user when root (it refuses root).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# pg_start PORT: a cluster of this run's own in $RUN/data on 127.0.0.1:PORT, tuned for loading
# (no fsync); sets PG_URL and PSQL (psql's command line). pg_stop stops it.
pg_start() {
  [ "$(id -u)" = 0 ] && chown postgres "$RUN"
  as_pg "$PGBIN/initdb" -D "$RUN/data" --auth=trust -U postgres --no-sync >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$RUN/data" -l "$RUN/pg.log" -w start \
    -o "-p $1 -k $RUN -c listen_addresses=127.0.0.1 -c shared_buffers=512MB -c fsync=off -c synchronous_commit=off" >/dev/null
  PG_URL=postgres://postgres@127.0.0.1:$1/postgres
  PSQL=(psql -q -X -h 127.0.0.1 -p "$1" -U postgres -d postgres)
}
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$RUN/data" -m fast stop >/dev/null 2>&1 || true; }
