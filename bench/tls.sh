#!/usr/bin/env bash
# The cost of one proxy hop over TLS: pagegate (rustls, ring) against nginx (OpenSSL), both
# terminating TLS 1.3 with one ECDSA P-256 certificate made here, in front of the same nginx
# backend (bench/peers/hop/), in alternating rounds of one run:
#
#   keep-alive  wrk -t1 -c32 over 32 kept-alive TLS connections: the cost of the records
#   handshake   wrk -t1 -c8 with `Connection: close`: every request a full handshake
#
# Each proxy's CPU time (user + system, from /proc) over its requests is the figure compared.
#
#   bench/tls.sh                  5 rounds of 5 s each, pagegate with 1 worker thread
#   ROUNDS=3 SECONDS_PER=3 bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SECONDS_PER=${SECONDS_PER:-5}
WORKERS=${WORKERS:-1}
HOPDIR=$(cd "${HOPDIR:-bench/peers/hop}" && pwd)

. bench/common.sh
need nginx wrk curl openssl
cargo build --release --quiet
BIN=$PWD/target/release/pagegate

start_run tls
RESULTS=$RUN/results.tsv

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$RUN/tls.key" -out "$RUN/tls.crt" 2>/dev/null

peer backend.conf backend.conf
# nginx as the hop peer configures it, its listener on TLS.
peer nginx-proxy.conf nginx.conf
sed -i -e "s#listen 127.0.0.1:19002;#listen 127.0.0.1:19032 ssl; ssl_certificate $RUN/tls.crt; ssl_certificate_key $RUN/tls.key; ssl_protocols TLSv1.2 TLSv1.3;#" \
  "$RUN/nginx.conf"
grep -q "19032 ssl" "$RUN/nginx.conf" || { echo "nginx-proxy.conf changed: its listen line was not found" >&2; exit 1; }
cat >"$RUN/pagegate.yaml" <<EOF
listen: 127.0.0.1:19034
access_log: false
max_connections: 4096
tls: {cert_file: '$RUN/tls.crt', key_file: '$RUN/tls.key'}
default: {action: pass, upstream: be}
upstreams:
  be: {url: 'http://127.0.0.1:19001', pool_max_idle: 64}
EOF

nginx -c "$RUN/backend.conf" -p "$RUN"
nginx -c "$RUN/nginx.conf" -p "$RUN"
"$BIN" run --config "$RUN/pagegate.yaml" --workers "$WORKERS" >"$RUN/logs/pagegate.log" 2>&1 &
PIDS+=($!)
PG=$!
for port in 19032 19034; do
  up=""
  for _ in $(seq 50); do curl -kfs -o /dev/null "https://127.0.0.1:$port/" && up=1 && break; sleep 0.1; done
  [ -n "$up" ] || { echo "nothing answers https://127.0.0.1:$port/ (logs: $RUN/logs)" >&2; cat "$RUN/logs/"* >&2; exit 1; }
done
for port in 19032 19034; do
  echo "127.0.0.1:$port: HTTP/$(curl -ks -o /dev/null -w '%{http_version} %{http_code}' "https://127.0.0.1:$port/"), $(
    echo | openssl s_client -connect "127.0.0.1:$port" 2>/dev/null | awk '/^New,/ { print $2, $NF }')"
done

pids_of() {
  case $1 in
    nginx*) echo "$(cat "$RUN/proxy.pid") $(pgrep -P "$(cat "$RUN/proxy.pid")" | tr '\n' ' ')" ;;
    pagegate*) echo "$PG" ;;
  esac
}
port_of() { case $1 in nginx*) echo 19032 ;; pagegate*) echo 19034 ;; esac; }
url_of() { echo "https://127.0.0.1:$(port_of "$1")/"; }

TARGETS="nginx pagegate nginx-handshake pagegate-handshake"
echo "pagegate: $WORKERS worker thread(s); nginx: 1 worker; ${SECONDS_PER}s each, $ROUNDS rounds"
for target in nginx pagegate; do wrk -t1 -c32 -d1s "$(url_of "$target")" >/dev/null; done
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  if [ $((round % 2)) = 1 ]; then order=$TARGETS
  else order=$(tr ' ' '\n' <<<"$TARGETS" | tac | tr '\n' ' '); fi
  for target in $order; do
    case $target in
      *-handshake) measure "$target" "$round" -c8 -H 'Connection: close' ;;
      *) measure "$target" "$round" ;;
    esac
  done
done

echo
# shellcheck disable=SC2086
medians 19 $TARGETS
echo
echo "pagegate / nginx over TLS, per round: median (min–max)"
echo "  keep-alive: cpu/req $(ratio pagegate nginx 6)   p99 $(ratio pagegate nginx 5)   req/s $(ratio pagegate nginx 3)"
echo "  handshake:  cpu/req $(ratio pagegate-handshake nginx-handshake 6)   p99 $(ratio pagegate-handshake nginx-handshake 5)   req/s $(ratio pagegate-handshake nginx-handshake 3)"
