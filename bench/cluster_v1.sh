#!/usr/bin/env bash
# rookery.v1 fan-out with and without --redis (docs/performance.md,
# "rookery.v1 through Redis"): 1000 subscribers offering rookery.v1 and the
# publisher (loadgen fanout --v1, 64-byte texts), --history 100:
#   alone:    one node without --redis;
#   numbered: one node with --redis (every message numbered by a script in
#             Redis and delivered when it comes back);
#   2 nodes:  two nodes on one Redis, 500 subscribers on each.
# Rounds interleaved; the nodes and Redis pinned to CPU 0, the loadgen to
# CPU 1. Then bench/cluster_resume.py (round trips, resume from Redis).
#
#   ROOKERY_REDIS_BIN  [target/redis-rel/release/rookery]  LOADGEN [bench/target/release/loadgen]
#   ROUNDS [3]  WARMUP [1]  DURATION [3]  FANOUT_WINDOW [128]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${ROOKERY_REDIS_BIN:-$ROOT/target/redis-rel/release/rookery}
LG=${LOADGEN:-$ROOT/bench/target/release/loadgen}
ROUNDS=${ROUNDS:-3} WARMUP=${WARMUP:-1} DURATION=${DURATION:-3} FANOUT_WINDOW=${FANOUT_WINDOW:-128}
PIN_S=(taskset -c 0) PIN_L=(taskset -c 1)
[ "$(nproc)" -ge 2 ] || { PIN_S=(); PIN_L=(); }
command -v redis-server >/dev/null || { echo "cluster_v1.sh: redis-server not installed" >&2; exit 1; }
[ -x "$BIN" ] || { echo "cluster_v1.sh: no $BIN (cargo build --release --features redis --target-dir target/redis-rel)" >&2; exit 1; }
[ -x "$LG" ] || { echo "cluster_v1.sh: no $LG (cd bench && cargo build --release --bin loadgen)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

node() { # PORT [ARGS...] -> pid in $node_pid
    local port=$1; shift
    "${PIN_S[@]}" "$BIN" -q --listen "127.0.0.1:$port" --ping-interval 0 --idle-timeout 0 \
        --history 100 "$@" >/dev/null 2>&1 &
    node_pid=$!; pids+=("$node_pid")
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.05; done
    echo "node on $port did not start" >&2; exit 1
}
get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
pct() { awk -v a="$1" -v b="$2" -v s="$3" -v e="$4" -v hz="$hz" 'BEGIN{printf "%.0f", (b-a)/hz/(e-s)*100}'; }

RP=$(free_port)
"${PIN_S[@]}" redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
redis_pid=$!; pids+=("$redis_pid"); sleep 0.3

results=()
for round in $(seq "$ROUNDS"); do
    for setup in alone numbered split; do
        p1=$(free_port); p2=
        # A prefix of its own: a room's history in Redis from an earlier
        # run would be replayed to the subscribers.
        R=(--redis "redis://127.0.0.1:$RP" --redis-prefix "r$round$setup")
        case $setup in
            alone) node "$p1"; n1=$node_pid; n2= ;;
            numbered) node "$p1" "${R[@]}"; n1=$node_pid; n2= ;;
            split) node "$p1" "${R[@]}"; n1=$node_pid; p2=$(free_port); node "$p2" "${R[@]}"; n2=$node_pid ;;
        esac
        [ "$setup" = alone ] || sleep 0.5
        split=(); [ -n "$p2" ] && split=(--split-to "ws://127.0.0.1:$p2/chat")
        r0=$(ticks "$redis_pid"); b0=$([ -n "$n2" ] && ticks "$n2" || echo 0); t0=$(date +%s.%N)
        out=$("${PIN_L[@]}" "$LG" fanout --url "ws://127.0.0.1:$p1/chat" "${split[@]}" --v1 \
            --connections 1000 --inflight "$FANOUT_WINDOW" --warmup "$WARMUP" --duration "$DURATION" \
            --server-pid "$n1" | grep '^RESULT')
        r1=$(ticks "$redis_pid"); b1=$([ -n "$n2" ] && ticks "$n2" || echo 0); t1=$(date +%s.%N)
        kill "$n1" ${n2:+"$n2"}; wait "$n1" ${n2:+"$n2"} 2>/dev/null || true
        line="$setup $(get msgs_per_s "$out") $(get p50_us "$out") $(get p99_us "$out") $(get server_cpu_pct "$out") $(pct "$b0" "$b1" "$t0" "$t1") $(pct "$r0" "$r1" "$t0" "$t1") $(get missed "$out")"
        echo "round $round: $line"; results+=("$line")
    done
done

echo
echo "| rookery.v1, --history 100 | deliveries/s | p50 µs | p99 µs | node 1 CPU % | node 2 CPU % | redis CPU % | missed |"
echo "|---|---|---|---|---|---|---|---|"
for setup in alone numbered split; do
    printf '%s\n' "${results[@]}" | awk -v s="$setup" '$1 == s' | sort -k2 -n |
        awk -v n="$ROUNDS" '{ a[NR] = $0 } END { split(a[int((n + 1) / 2)], f, " ");
            printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8] }'
done
echo
(cd bench && python3 cluster_resume.py "$BIN")
