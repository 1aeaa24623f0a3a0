#!/usr/bin/env bash
# Cross-node fan-out through Redis (docs/cluster.md), against one node:
#   single:  one rookery, 1000 subscribers + the publisher on it;
#   cluster: two rookery nodes on one redis-server, 500 subscribers on each,
#            the publisher on node 1 (its messages reach node 2 via Redis).
# Same loadgen (fanout, 64-byte texts, window FANOUT_WINDOW), rounds
# interleaved; every server process (both nodes and Redis) pinned to CPU 0,
# the loadgen to CPU 1, as in run.sh. Prints each run and the medians.
#
#   ROOKERY_REDIS_BIN  rookery built with --features redis  [target/redis-rel/release/rookery]
#   LOADGEN            [bench/target/release/loadgen]
#   ROUNDS [3]  WARMUP [1]  DURATION [3]  FANOUT_WINDOW [128]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${ROOKERY_REDIS_BIN:-$ROOT/target/redis-rel/release/rookery}
LG=${LOADGEN:-$ROOT/bench/target/release/loadgen}
ROUNDS=${ROUNDS:-3} WARMUP=${WARMUP:-1} DURATION=${DURATION:-3} FANOUT_WINDOW=${FANOUT_WINDOW:-128}
PIN_S=(taskset -c 0) PIN_L=(taskset -c 1)
[ "$(nproc)" -ge 2 ] || { PIN_S=(); PIN_L=(); }
command -v redis-server >/dev/null || { echo "cluster.sh: redis-server not installed" >&2; exit 1; }
[ -x "$BIN" ] || { echo "cluster.sh: no $BIN (cargo build --release --features redis --target-dir target/redis-rel)" >&2; exit 1; }
[ -x "$LG" ] || { echo "cluster.sh: no $LG (cd bench && cargo build --release --bin loadgen)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

node() { # PORT [ARGS...] -> pid in $node_pid
    local port=$1; shift
    "${PIN_S[@]}" "$BIN" -q --listen "127.0.0.1:$port" --ping-interval 0 --idle-timeout 0 "$@" >/dev/null 2>&1 &
    node_pid=$!; pids+=("$node_pid")
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.05; done
    echo "node on $port did not start" >&2; exit 1
}
get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

RP=$(free_port)
"${PIN_S[@]}" redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
redis_pid=$!; pids+=("$redis_pid"); sleep 0.3

results=()
for round in $(seq "$ROUNDS"); do
    # single node
    p1=$(free_port); node "$p1"; n1=$node_pid
    out=$("${PIN_L[@]}" "$LG" fanout --url "ws://127.0.0.1:$p1/chat" --connections 1000 \
        --inflight "$FANOUT_WINDOW" --warmup "$WARMUP" --duration "$DURATION" --server-pid "$n1" | grep '^RESULT')
    kill "$n1"; wait "$n1" 2>/dev/null || true
    line="single $(get msgs_per_s "$out") $(get p50_us "$out") $(get p99_us "$out") $(get server_cpu_pct "$out") - - $(get missed "$out")"
    echo "round $round: $line"; results+=("$line")
    # two nodes through Redis
    p1=$(free_port); node "$p1" --redis "redis://127.0.0.1:$RP"; n1=$node_pid
    p2=$(free_port); node "$p2" --redis "redis://127.0.0.1:$RP"; n2=$node_pid
    sleep 0.5
    r0=$(ticks "$redis_pid"); b0=$(ticks "$n2"); t0=$(date +%s.%N)
    out=$("${PIN_L[@]}" "$LG" fanout --url "ws://127.0.0.1:$p1/chat" --split-to "ws://127.0.0.1:$p2/chat" \
        --connections 1000 --inflight "$FANOUT_WINDOW" --warmup "$WARMUP" --duration "$DURATION" \
        --server-pid "$n1" | grep '^RESULT')
    r1=$(ticks "$redis_pid"); b1=$(ticks "$n2"); t1=$(date +%s.%N)
    kill "$n1" "$n2"; wait "$n1" "$n2" 2>/dev/null || true
    redis_pct=$(awk -v a="$r0" -v b="$r1" -v s="$t0" -v e="$t1" -v hz="$hz" 'BEGIN{printf "%.0f", (b-a)/hz/(e-s)*100}')
    n2_pct=$(awk -v a="$b0" -v b="$b1" -v s="$t0" -v e="$t1" -v hz="$hz" 'BEGIN{printf "%.0f", (b-a)/hz/(e-s)*100}')
    line="cluster $(get msgs_per_s "$out") $(get p50_us "$out") $(get p99_us "$out") $(get server_cpu_pct "$out") $n2_pct $redis_pct $(get missed "$out")"
    echo "round $round: $line"; results+=("$line")
done

echo
echo "| setup | deliveries/s | p50 µs | p99 µs | node 1 CPU % | node 2 CPU % | redis CPU % | missed (max) |"
echo "|---|---|---|---|---|---|---|---|"
for setup in single cluster; do
    printf '%s\n' "${results[@]}" | awk -v s="$setup" '
        $1 == s { n++; for (i = 2; i <= 8; i++) v[i, n] = $i }
        END {
            printf "| %s |", (s == "single" ? "1 node, 1000 subscribers" : "2 nodes x 500 via Redis");
            for (i = 2; i <= 7; i++) {
                if (v[i, 1] == "-") { printf " - |"; continue }
                m = 0; for (j = 1; j <= n; j++) a[j] = v[i, j] + 0
                for (j = 1; j <= n; j++) for (k = j + 1; k <= n; k++) if (a[k] < a[j]) { t = a[j]; a[j] = a[k]; a[k] = t }
                printf " %s |", a[int((n + 1) / 2)]
            }
            mx = 0; for (j = 1; j <= n; j++) if (v[8, j] + 0 > mx) mx = v[8, j] + 0
            printf " %d |\n", mx
        }'
done
echo
echo "node 1 CPU: the loadgen's measured window; node 2 and redis CPU: the whole loadgen run (connect, warm-up, measure), % of one core; all servers on CPU 0."
