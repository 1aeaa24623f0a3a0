#!/usr/bin/env bash
# Stuck TLS handshakes against the rookery binary: N raw connections each
# send part of a ClientHello and then nothing, and the server's RSS (VmRSS)
# is read before, while they are held, and after the handshake timeout has
# closed them. docs/security.md ("TLS handshakes") quotes its figures.
#
#   ROOKERY_TLS_BIN  rookery built with --features tls
#                    [<repo>/target/tls/release/rookery, built first if it is
#                    the default path: cargo build --release --features tls
#                    --target-dir target/tls]
#   N                connections                                    [1000]
#   HELLO            huge: a ClientHello announcing 65,000 B, sent over four
#                    16 KiB records, all but its last 100 bytes;
#                    most: the largest ClientHello the server takes (8 KiB
#                    with its headers), all but its last byte       [huge]
#   TIMEOUT          the server's --handshake-timeout, in seconds      [5]
#   WAVES            waves of N, one after the other's timeout           [2]
#
# Needs python3 (standard library only) and openssl (a throwaway
# certificate). Linux only (/proc). Example:
#   bench/tls_handshakes.sh; HELLO=most bench/tls_handshakes.sh
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${ROOKERY_TLS_BIN:-$repo/target/tls/release/rookery}
n=${N:-1000}
hello=${HELLO:-huge}
timeout=${TIMEOUT:-5}
waves=${WAVES:-2}

if [ "$bin" = "$repo/target/tls/release/rookery" ]; then
    (cd "$repo" && cargo build --release --features tls --target-dir target/tls --bin rookery)
fi
for tool in python3 openssl; do
    command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }
done

dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

ulimit -n $((2 * n + 100))
"$bin" --listen 127.0.0.1:0 --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem" \
    --max-connections $((n + 100)) --handshake-timeout "${timeout}s" -q \
    >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 100); do
    grep -q '^listening on ' "$dir/out" 2>/dev/null && break
    sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$dir/out")
[ -n "$addr" ] || { cat "$dir/err" >&2; exit 1; }

python3 - "$pid" "$addr" "$n" "$hello" "$timeout" "$waves" <<'EOF'
import socket, sys, time

pid, addr, n, hello = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
timeout, waves = float(sys.argv[5]), int(sys.argv[6])
host, port = addr.rsplit(":", 1)

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def client_hello(announced):
    """A ClientHello announcing `announced` bytes of body, in 16 KiB records."""
    message = bytes([1]) + announced.to_bytes(3, "big") + b"\x03\x03"
    message += bytes(4 + announced - len(message))
    wire = b""
    for i in range(0, len(message), 16384):
        record = message[i:i + 16384]
        wire += b"\x16\x03\x01" + len(record).to_bytes(2, "big") + record
    return wire

if hello == "huge":
    payload = client_hello(65000)[:-100]
else:
    payload = client_hello(8192 - 9)[:-1]

start = rss_kib()
print(f"{n} connections a wave, HELLO={hello} ({len(payload)} B each): RSS {start} KiB at the start")
for wave in range(1, waves + 1):
    before = rss_kib()
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)))
        try:
            s.sendall(payload)
        except OSError:
            pass  # dropped by the server before it took everything
        socks.append(s)
    time.sleep(1)
    held = rss_kib()
    # Keep the sockets open: the handshake timeout closes them.
    time.sleep(timeout + 1)
    after = rss_kib()
    for s in socks:
        s.close()
    print(f"wave {wave}: RSS {held} KiB held ({(held - before) * 1024 // n} B each over the "
          f"{before} KiB before it), {after} KiB after the handshake timeout")
EOF
