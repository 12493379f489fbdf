#!/usr/bin/env bash
# What a verified JWT costs on the hop, and what remembering verified tokens saves: pagegate
# in front of the nginx backend of bench/peers/hop/ with no limits (`none`), with a per-client
# rate keyed by the client address (`local`), and with the same rate keyed by the `sub` of a
# token pagegate verifies — RS256 (RSA 2048) and ES256 (P-256), each with `token_cache: 0`
# (every request checks the signature) and with the default cache (one client, one token:
# every request after the first is a hit). In turns, for ROUNDS rounds; wrk -t1 -c32 sends
# the same `Authorization: Bearer` token on every request. Each pagegate's CPU time per
# request (user + system, from /proc) and wrk's p50/p99.
#
# Then the cache's memory: TOKENS (10000) distinct HS256 tokens of about 1 KiB, each sent a
# few times, to a pagegate that remembers them all and to one that remembers none; the RSS
# difference over TOKENS is what one entry costs.
#
#   bench/identity.sh                   5 rounds of 5 s
#   ROUNDS=3 SECONDS_PER=3 bench/identity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SECONDS_PER=${SECONDS_PER:-5}
HOPDIR=$(cd "${HOPDIR:-bench/peers/hop}" && pwd)

. bench/common.sh
need nginx wrk openssl perl curl
cargo build --release --quiet
BIN=$PWD/target/release/pagegate

start_run identity
peer backend.conf backend.conf
nginx -c "$RUN/backend.conf" -p "$RUN"

# The keys and one token of each (openssl signs; ES256's DER signature becomes r || s).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$RUN/rsa.pem" 2>/dev/null
openssl pkey -in "$RUN/rsa.pem" -pubout -out "$RUN/rsa.pub.pem"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$RUN/ec.pem" 2>/dev/null
openssl pkey -in "$RUN/ec.pem" -pubout -out "$RUN/ec.pub.pem"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
token() { # $1 alg, $2 private key
  local message sig
  message="$(printf '{"alg":"%s","typ":"JWT"}' "$1" | b64url).$(printf '{"iss":"bench","aud":"bench","sub":"client-1","exp":%s}' "$(($(date +%s) + 86400))" | b64url)"
  if [ "$1" = RS256 ]; then
    sig=$(printf '%s' "$message" | openssl dgst -sha256 -sign "$2" | b64url)
  else
    printf '%s' "$message" | openssl dgst -sha256 -sign "$2" >"$RUN/sig.der"
    sig=$(openssl asn1parse -inform DER -in "$RUN/sig.der" | awk -F: '/INTEGER/ { print $NF }' |
      perl -ne 'chomp; $_ = substr("0" x 64 . $_, -64); print pack("H*", $_)' | b64url)
  fi
  echo "$message.$sig"
}
RS=$(token RS256 "$RUN/rsa.pem")
ES=$(token ES256 "$RUN/ec.pem")

pagegate_conf() { # $1 port, $2 limits (or empty), $3 token_cache
  {
    echo "listen: 127.0.0.1:$1"
    echo "access_log: false"
    echo "identities:"
    echo "  rs: {algorithms: [RS256], issuer: bench, audience: bench, public_key_file: '$RUN/rsa.pub.pem', token_cache: ${3:-1000}}"
    echo "  es: {algorithms: [ES256], issuer: bench, audience: bench, public_key_file: '$RUN/ec.pub.pem', token_cache: ${3:-1000}}"
    echo "upstreams: {be: {url: 'http://127.0.0.1:19001', pool_max_idle: 64}}"
    if [ -n "$2" ]; then
      echo "default: {action: pass, upstream: be, limits: $2}"
    else
      echo "default: {action: pass, upstream: be}"
    fi
  } >"$RUN/pagegate-$1.yaml"
}
RATE="rate: {per_client: {requests: 1000000000, per: 1s}}"
pagegate_conf 19051 ""
pagegate_conf 19052 "{$RATE}"
pagegate_conf 19053 "{key: {jwt: rs, claim: sub}, $RATE}" 0
pagegate_conf 19054 "{key: {jwt: rs, claim: sub}, $RATE}"
pagegate_conf 19055 "{key: {jwt: es, claim: sub}, $RATE}" 0
pagegate_conf 19056 "{key: {jwt: es, claim: sub}, $RATE}"
TARGETS="none local rs256 rs256_cache es256 es256_cache"
declare -A PID PORT=([none]=19051 [local]=19052 [rs256]=19053 [rs256_cache]=19054 [es256]=19055 [es256_cache]=19056)
for target in $TARGETS; do
  "$BIN" run --config "$RUN/pagegate-${PORT[$target]}.yaml" --workers 1 >"$RUN/logs/$target.log" 2>&1 &
  PIDS+=($!)
  PID[$target]=$!
done
token_of() { case $1 in rs*) echo "$RS" ;; es*) echo "$ES" ;; *) echo none ;; esac; }
for target in $TARGETS; do
  port=${PORT[$target]}
  for _ in $(seq 50); do curl -fs -o /dev/null -H "Authorization: Bearer $(token_of "$target")" "http://127.0.0.1:$port/" && break; sleep 0.1; done
  curl -fsS -o /dev/null -H "Authorization: Bearer $(token_of "$target")" "http://127.0.0.1:$port/" ||
    { echo "$target does not accept its token" >&2; exit 1; }
done

pids_of() { echo "${PID[$1]}"; }
port_of() { echo "${PORT[$1]}"; }
RESULTS=$RUN/results.tsv

echo "pagegate: 1 worker thread each; wrk -t1 -c32, ${SECONDS_PER}s each, $ROUNDS rounds"
for target in $TARGETS; do
  wrk -t1 -c32 -d1s -H "Authorization: Bearer $(token_of "$target")" "http://127.0.0.1:${PORT[$target]}/" >/dev/null
done
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  order=$(tr ' ' '\n' <<<"$TARGETS" | awk -v r="$round" '{ t[NR - 1] = $0 } END { for (i = 0; i < NR; i++) print t[(i + r) % NR] }' | tr '\n' ' ')
  for target in $order; do measure "$target" "$round" -H "Authorization: Bearer $(token_of "$target")"; done
done

echo
# shellcheck disable=SC2086
medians 12 $TARGETS
echo
echo "per round, CPU per request: median (min–max)"
echo "  RS256, every signature checked / no limits: $(ratio rs256 none 6)   / local rate: $(ratio rs256 local 6)"
echo "  RS256, remembered / no limits:              $(ratio rs256_cache none 6)   / local rate: $(ratio rs256_cache local 6)"
echo "  ES256, every signature checked / no limits: $(ratio es256 none 6)   / local rate: $(ratio es256 local 6)"
echo "  ES256, remembered / no limits:              $(ratio es256_cache none 6)   / local rate: $(ratio es256_cache local 6)"
echo "  remembered / checked: RS256 $(ratio rs256_cache rs256 6), ES256 $(ratio es256_cache es256 6)"

# The cache's memory: distinct tokens (HS256, signed by perl's core Digest::SHA), sent by a
# wrk script that cycles through them.
TOKENS=${TOKENS:-10000}
export PAGEGATE_BENCH_SECRET=bench-secret-bench-secret-bench-secret
perl -MDigest::SHA=hmac_sha256 -MMIME::Base64 -e '
  sub b64 { my $s = encode_base64($_[0], ""); $s =~ tr{+/}{-_}; $s =~ s/=+$//; $s }
  my ($n, $exp, $pad) = ($ARGV[0], time + 86400, "p" x 600);
  for my $i (1 .. $n) {
    my $m = b64(q({"alg":"HS256","typ":"JWT"})) . "." .
      b64(qq({"iss":"bench","aud":"bench","sub":"client-$i","exp":$exp,"scope":"$pad"}));
    print "$m." . b64(hmac_sha256($m, $ENV{PAGEGATE_BENCH_SECRET})) . "\n";
  }' "$TOKENS" >"$RUN/tokens.txt"
cat >"$RUN/tokens.lua" <<'LUA'
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA
memory_conf() { # $1 port, $2 token_cache
  {
    echo "listen: 127.0.0.1:$1"
    echo "access_log: false"
    echo "identities: {hs: {algorithms: [HS256], issuer: bench, audience: bench, secret_env: PAGEGATE_BENCH_SECRET, token_cache: $2}}"
    echo "upstreams: {be: {url: 'http://127.0.0.1:19001', pool_max_idle: 64}}"
    echo "default: {action: pass, upstream: be, limits: {key: {jwt: hs, claim: sub}, $RATE}}"
  } >"$RUN/pagegate-$1.yaml"
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
declare -A MEM
for cache in 0 "$TOKENS"; do
  port=$((19057 + (cache > 0)))
  memory_conf "$port" "$cache"
  "$BIN" run --config "$RUN/pagegate-$port.yaml" --workers 1 >"$RUN/logs/memory-$cache.log" 2>&1 &
  PIDS+=($!)
  pid=$!
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  curl -fsS -o /dev/null -H "Authorization: Bearer $(head -1 "$RUN/tokens.txt")" "http://127.0.0.1:$port/" ||
    { echo "the memory run's tokens are refused" >&2; exit 1; }
  TOKENS_FILE="$RUN/tokens.txt" wrk -t1 -c8 -d"$((TOKENS / 2000 + 2))s" -s "$RUN/tokens.lua" "http://127.0.0.1:$port/" >"$RUN/logs/memory-wrk-$cache.log"
  MEM[$cache]=$(rss_kib "$pid")
done
echo
echo "token cache memory: $TOKENS distinct tokens of $(head -1 "$RUN/tokens.txt" | tr -d '\n' | wc -c) bytes:" \
  "RSS $((MEM[$TOKENS] / 1024)) MiB remembered, $((MEM[0] / 1024)) MiB not;" \
  "about $(((MEM[$TOKENS] - MEM[0]) * 1024 / TOKENS)) bytes an entry"
