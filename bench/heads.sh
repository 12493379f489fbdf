#!/usr/bin/env bash
# Memory under unfinished request heads: 1,000 connections each send 28 KB of a head and never
# finish it, to pagegate and to nginx (bench/peers/hop/nginx-proxy.conf, which accepts heads
# of up to 4 x 8 KB header lines), in the same run; then 1,000 connections each try a 390 KB
# head (the self-protection issue's figure), which pagegate answers 431 at max_head_bytes.
# Prints each proxy's RSS (nginx: master + worker) before and with the heads held.
#
#   bench/heads.sh            1,000 connections
#   CONNS=500 bench/heads.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-1000}
HOPDIR=$(cd "${HOPDIR:-bench/peers/hop}" && pwd)
. bench/common.sh
need nginx
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
BIN=$PWD/target/release/pagegate
start_run heads
peer backend.conf backend.conf
peer nginx-proxy.conf nginx.conf
nginx -c "$RUN/backend.conf" -p "$RUN"
nginx -c "$RUN/nginx.conf" -p "$RUN"
cat >"$RUN/pagegate.yaml" <<EOF
listen: 127.0.0.1:19004
access_log: false
max_connections: 4096
header_read_timeout: 120s
default: {action: pass, upstream: be}
upstreams: {be: {url: 'http://127.0.0.1:19001'}}
EOF
"$BIN" run --workers 1 --config "$RUN/pagegate.yaml" >"$RUN/pagegate.log" 2>&1 &
PIDS+=($!)
PAGEGATE=$!
sleep 1
NGINX_PIDS="$(cat "$RUN/proxy.pid") $(pgrep -P "$(cat "$RUN/proxy.pid")" | tr '\n' ' ')"

python3 - "$CONNS" "$PAGEGATE" "$NGINX_PIDS" <<'EOF'
import socket, sys, time
conns, pagegate, nginx = int(sys.argv[1]), sys.argv[2], sys.argv[3].split()

def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return total

def hold(port, head):
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    answered = 0
    for s in socks:
        sent = 0
        deadline = time.time() + 5
        while sent < len(head) and time.time() < deadline:
            try:
                sent += s.send(head[sent:])
            except BlockingIOError:
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                answered += 1
                break
    time.sleep(1)
    return socks, answered

# 4 header lines of 7,000 bytes, no blank line: a 28 KB head that never ends.
unfinished = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
    b"X-Pad-%d: %s\r\n" % (i, b"a" * 7000) for i in range(4))
huge = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
    b"X-Pad-%d: %s\r\n" % (i, b"a" * 7000) for i in range(56))
print(f"{conns} connections; RSS in MiB (nginx: master + worker)")
rows = []
for name, port, pids in (("pagegate", 19004, [pagegate]), ("nginx", 19002, nginx)):
    before = rss_kib(pids)
    socks, _ = hold(port, unfinished)
    held = rss_kib(pids)
    for s in socks: s.close()
    time.sleep(1)
    socks, refused = hold(port, huge)
    big = rss_kib(pids)
    for s in socks: s.close()
    time.sleep(1)
    rows.append((name, before, held, big, refused))
    print(f"{name:9} idle {before/1024:7.1f}   28 KB heads held {held/1024:7.1f}   390 KB heads tried {big/1024:7.1f}")
(_, pb, ph, pbig, _), (_, nb, nh, nbig, _) = rows
print(f"growth per unfinished 28 KB head: pagegate {(ph-pb)/conns:.1f} KiB, nginx {(nh-nb)/conns:.1f} KiB"
      f" (ratio {((ph-pb)/max(nh-nb,1)):.2f})")
print(f"with 390 KB heads tried: pagegate {pbig/1024:.1f} MiB, nginx {nbig/1024:.1f} MiB")
EOF
