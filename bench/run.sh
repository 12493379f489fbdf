#!/usr/bin/env bash
# Runs pagegate's benchmarks in release mode and prints their figures.
#   bench/run.sh            both benches
#   bench/run.sh proxy      pass-through, guarded list, 2 GiB cut (real pagegate process)
#   bench/run.sh scanner    JSON scanner MB/s against memcpy and serde_json (criterion)
#   bench/run.sh demo       the demo: unbounded list vs first page, page cost by depth, export
#   bench/run.sh hop        the hop cost against nginx and haproxy (installs them if missing)
#   bench/run.sh tls        the hop over TLS against nginx: kept-alive, and a handshake each
#   bench/run.sh profile    where the hop's CPU goes (perf on a frame-pointer build; not in all)
#   bench/run.sh instructions  the hop's instructions a request under callgrind (not in all)
#   bench/run.sh heads      RSS under 1,000 unfinished request heads, against nginx
#   bench/run.sh limits     limiter memory with 1,000,000 clients; the hop with limits vs none
#   bench/run.sh identity   a verified JWT on the hop, each signature checked or remembered
#   bench/run.sh pg         the query service on 5,000,000 rows vs psql \copy and FastAPI
#   bench/run.sh busy       pages under exports, slow and leaving clients, on 1,000,000 rows
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
if [ "$which" = all ] || [ "$which" = proxy ]; then
  cargo bench --bench proxy
fi
if [ "$which" = all ] || [ "$which" = scanner ]; then
  cargo bench --bench scanner
fi
if [ "$which" = all ] || [ "$which" = demo ]; then
  bench/demo_walk.sh
fi
if [ "$which" = all ] || [ "$which" = hop ]; then
  bench/hop.sh
fi
if [ "$which" = all ] || [ "$which" = tls ]; then
  bench/tls.sh
fi
if [ "$which" = profile ]; then
  bench/profile.sh
fi
if [ "$which" = instructions ]; then
  bench/instructions.sh
fi
if [ "$which" = all ] || [ "$which" = heads ]; then
  bench/heads.sh
fi
if [ "$which" = all ] || [ "$which" = limits ]; then
  cargo bench --bench limits
  bench/limits.sh
fi
if [ "$which" = all ] || [ "$which" = identity ]; then
  bench/identity.sh
fi
if [ "$which" = all ] || [ "$which" = pg ]; then
  bench/pg.sh
fi
if [ "$which" = all ] || [ "$which" = busy ]; then
  bench/busy.sh
fi
