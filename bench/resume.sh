#!/usr/bin/env bash
# rookery.v1 against plain frames (docs/performance.md, "rookery.v1"):
#   fanout:  1000 subscribers + the publisher, 64-byte texts (loadgen fanout),
#            plain frames and rookery.v1 envelopes (loadgen --v1), rounds
#            interleaved, with --history 0 and --history 100;
#   resume:  bench/resume.py: server CPU per message of a resume against a
#            plain newcomer's history.
# Server pinned to CPU 0, loadgen to CPU 1, as in run.sh. Prints each run
# and the medians.
#
#   ROOKERY_BIN  [target/release/rookery]   LOADGEN [bench/target/release/loadgen]
#   ROUNDS [3]  WARMUP [1]  DURATION [3]  FANOUT_WINDOW [128]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${ROOKERY_BIN:-$ROOT/target/release/rookery}
LG=${LOADGEN:-$ROOT/bench/target/release/loadgen}
ROUNDS=${ROUNDS:-3} WARMUP=${WARMUP:-1} DURATION=${DURATION:-3} FANOUT_WINDOW=${FANOUT_WINDOW:-128}
PIN_S=(taskset -c 0) PIN_L=(taskset -c 1)
[ "$(nproc)" -ge 2 ] || { PIN_S=(); PIN_L=(); }
[ -x "$BIN" ] || { echo "resume.sh: no $BIN (cargo build --release)" >&2; exit 1; }
[ -x "$LG" ] || { echo "resume.sh: no $LG (cd bench && cargo build --release --bin loadgen)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

results=()
for round in $(seq "$ROUNDS"); do
    for history in 0 100; do
        for mode in plain v1; do
            port=$(free_port)
            "${PIN_S[@]}" "$BIN" -q --listen "127.0.0.1:$port" --ping-interval 0 --idle-timeout 0 \
                --history "$history" >/dev/null 2>&1 &
            pid=$!
            for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
            flags=(); [ "$mode" = v1 ] && flags=(--v1)
            out=$("${PIN_L[@]}" "$LG" fanout --url "ws://127.0.0.1:$port/chat" --connections 1000 \
                --inflight "$FANOUT_WINDOW" --warmup "$WARMUP" --duration "$DURATION" --server-pid "$pid" \
                "${flags[@]}" | grep '^RESULT')
            kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
            line="$mode-h$history $(get msgs_per_s "$out") $(get p50_us "$out") $(get p99_us "$out") $(get server_cpu_pct "$out") $(get missed "$out")"
            echo "round $round: $line"; results+=("$line")
        done
    done
done
echo
# The loadgen (one thread, 1000 sockets) is the bottleneck here, not the
# server: server CPU per delivery is the figure that compares the two.
echo "| fanout (1000 subscribers) | deliveries/s | p50 µs | p99 µs | server CPU % | server ns per delivery | missed |"
echo "|---|---|---|---|---|---|---|"
for key in plain-h0 v1-h0 plain-h100 v1-h100; do
    printf '%s\n' "${results[@]}" | awk -v k="$key" '$1 == k' | sort -k2 -n |
        awk -v n="$ROUNDS" '{ a[NR] = $0 } END { split(a[int((n + 1) / 2)], f, " ");
            printf "| %s | %s | %s | %s | %s | %.0f | %s |\n", f[1], f[2], f[3], f[4], f[5], f[5] * 1e7 / f[2], f[6] }'
done
echo
(cd bench && python3 resume.py "$BIN")
