#!/usr/bin/env bash
# The article's failure and its cure, side by side on the demo (release build, loopback):
#   1. the naive backend's unbounded GET /events (every row) against pagegate's first page;
#   2. the cost of a keyset page at the start and at the end of a 1,000,000-row walk, following
#      Link headers (1000 pages of 1000 rows);
#   3. the 1M-row CSV export directly and through pagegate.
# Usage: bench/demo_walk.sh   (needs curl)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
proxy=127.0.0.1:18480
dir=$(mktemp -d)
# The demo backend listens where config/demo.yaml says (127.0.0.1:8081).
./target/release/pagegate demo --listen "$proxy" >"$dir/demo.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://$proxy/events" && break; sleep 0.05; done
backend=127.0.0.1:8081

t() { curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "$1"; }

read -r naive_s naive_b < <(t "http://$backend/events")
read -r first_s first_b < <(t "http://$proxy/events")
echo "unbounded GET /events, naive backend directly: $naive_b bytes in ${naive_s}s"
echo "GET /events through pagegate (first keyset page): $first_b bytes in ${first_s}s"
awk -v a="$naive_s" -v b="$first_s" 'BEGIN { printf "  time ratio naive/pagegate: %.0fx\n", a / b }'

url="/events?limit=1000"
pages=0
: >"$dir/times"
while [ -n "$url" ]; do
  curl -s -o /dev/null -D "$dir/h" -w '%{time_total}\n' "http://$proxy$url" >>"$dir/times"
  url=$(sed -n 's/^link: <\(.*\)>; rel="next".*/\1/Ip' "$dir/h" | tr -d '\r')
  pages=$((pages + 1))
done
first50=$(head -n 50 "$dir/times" | awk '{ s += $1 } END { printf "%.2f", s / NR * 1000 }')
last50=$(tail -n 50 "$dir/times" | awk '{ s += $1 } END { printf "%.2f", s / NR * 1000 }')
echo "walked $pages pages of 1000 rows by Link headers"
echo "  mean page time, first 50 pages: ${first50} ms; last 50 pages (rows 950,001+): ${last50} ms"
awk -v a="$last50" -v b="$first50" 'BEGIN { printf "  depth ratio last/first: %.2f\n", a / b }'

read -r direct_s direct_b < <(t "http://$backend/events/export")
read -r proxied_s proxied_b < <(t "http://$proxy/events/export")
echo "CSV export, 1M rows: directly ${direct_s}s, through pagegate ${proxied_s}s ($proxied_b bytes)"
awk -v a="$direct_s" -v b="$proxied_s" 'BEGIN { printf "  throughput ratio proxied/direct: %.2f\n", a / b }'
