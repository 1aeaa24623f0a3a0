#!/usr/bin/env bash
# Benchmarks rookery against single-threaded peer servers (tokio-tungstenite,
# fastwebsockets) and prints a Markdown table. See bench/README.md.
#
# Everything is tunable from the environment; the defaults are the standard run:
#   ROOKERY_BIN    server under test      [<repo>/target/release/rookery]
#   BUILD_ROOKERY  1: cargo build --release in the repo first, 0: don't
#                  [1 when ROOKERY_BIN is the default path, else 0]
#   ROOKERY_ARGS   extra flags for rookery (e.g. "-q")            []
#   SCENARIOS      "echo-small echo-large fanout idle"
#   SERVERS        "rookery tokio-tungstenite fastwebsockets"
#   ROUNDS         runs per scenario and server (median reported) [3]
#   WARMUP / DURATION   seconds before / of the measurement       [1 / 5]
#   HOLD           idle: seconds the connections are held open    [3]
#   FANOUT_WINDOW  fanout: messages in flight from the publisher  [128]
#   SERVER_CPU / LOADGEN_CPU   CPUs to pin to with taskset        [0 / 1]
#   OUT_DIR        where logs, results.tsv and table.md go
#                  [bench/target/results/<timestamp>]
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
DEFAULT_ROOKERY_BIN=$REPO_DIR/target/release/rookery
ROOKERY_BIN=${ROOKERY_BIN:-$DEFAULT_ROOKERY_BIN}
if [ "$ROOKERY_BIN" = "$DEFAULT_ROOKERY_BIN" ]; then
    BUILD_ROOKERY=${BUILD_ROOKERY:-1}
else
    BUILD_ROOKERY=${BUILD_ROOKERY:-0}
fi
ROOKERY_ARGS=${ROOKERY_ARGS:-}
SCENARIOS=${SCENARIOS:-"echo-small echo-large fanout idle"}
SERVERS=${SERVERS:-"rookery tokio-tungstenite fastwebsockets"}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
DURATION=${DURATION:-5}
HOLD=${HOLD:-3}
FANOUT_WINDOW=${FANOUT_WINDOW:-128}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/target/results/$(date +%Y%m%d-%H%M%S)}

LOADGEN=$BENCH_DIR/target/release/loadgen
RESULTS=$OUT_DIR/results.tsv
TABLE=$OUT_DIR/table.md

say() { printf '%s\n' "$*" >&2; }
die() {
    say "run.sh: $*"
    exit 1
}

# ---------------------------------------------------------------- build
say "== building the harness (release)"
(cd "$BENCH_DIR" && cargo build --release --locked --quiet) || die "harness build failed"

if [ "$BUILD_ROOKERY" = 1 ]; then
    say "== building rookery (release) in $REPO_DIR"
    if ! (cd "$REPO_DIR" && cargo build --release --quiet); then
        say "run.sh: warning: rookery build failed; using $ROOKERY_BIN only if it exists"
    fi
fi

servers=()
for s in $SERVERS; do
    case $s in
        rookery)
            if [ -x "$ROOKERY_BIN" ]; then
                servers+=("$s")
            else
                say "run.sh: rookery binary not found at $ROOKERY_BIN: SKIPPING rookery"
                say "        (build it with 'cargo build --release' in $REPO_DIR, or set ROOKERY_BIN)"
            fi
            ;;
        tokio-tungstenite | fastwebsockets) servers+=("$s") ;;
        *) die "unknown server '$s'" ;;
    esac
done
[ ${#servers[@]} -gt 0 ] || die "no server to benchmark"

# ---------------------------------------------------------------- environment
# 10,000 idle connections need >10,000 descriptors in the loadgen (it raises
# its own soft limit too) and in every server, which inherit this shell's.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
    say "run.sh: warning: open-file limit is $(ulimit -n) (hard $(ulimit -Hn)); the idle"
    say "        scenario needs ~10,100 for the server: raise the hard limit (e.g. ulimit -Hn 20000 as root)"
fi

if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c "$SERVER_CPU")
    PIN_LOADGEN=(taskset -c "$LOADGEN_CPU")
    pinning="server on CPU $SERVER_CPU, loadgen on CPU $LOADGEN_CPU"
else
    say "run.sh: warning: taskset missing or fewer than 2 CPUs: not pinning"
    PIN_SERVER=()
    PIN_LOADGEN=()
    pinning="not pinned"
fi

read -ra rookery_extra <<<"$ROOKERY_ARGS"
mkdir -p "$OUT_DIR" || die "cannot create $OUT_DIR"
: >"$RESULTS"

# ---------------------------------------------------------------- servers
SRV_PID=
SRV_ADDR=

alive() {
    # A child that exited stays a zombie until waited for: not alive.
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

stop_server() {
    [ -n "$SRV_PID" ] || return 0
    kill -TERM "$SRV_PID" 2>/dev/null
    for _ in $(seq 80); do
        alive "$SRV_PID" || break
        sleep 0.1
    done
    if alive "$SRV_PID"; then
        say "run.sh: server $SRV_PID ignored SIGTERM for 8 s: killing it"
        kill -KILL "$SRV_PID" 2>/dev/null
    fi
    wait "$SRV_PID" 2>/dev/null
    SRV_PID=
}
trap 'stop_server; exit 130' INT TERM
trap 'stop_server' EXIT

start_server() { # name mode log
    local name=$1 mode=$2 log=$3
    local -a cmd
    if [ "$name" = rookery ]; then
        cmd=("$ROOKERY_BIN" --mode "$mode" --listen 127.0.0.1:0 --path /chat
            --max-connections 20000 --idle-timeout 0 "${rookery_extra[@]}")
    else
        cmd=("$BENCH_DIR/target/release/peer-$name" --mode "$mode" --listen 127.0.0.1:0)
    fi
    : >"$log"
    "${PIN_SERVER[@]}" "${cmd[@]}" >"$log" 2>&1 &
    SRV_PID=$!
    SRV_ADDR=
    for _ in $(seq 100); do
        SRV_ADDR=$(grep -oE '127\.0\.0\.1:[1-9][0-9]*' "$log" | head -n1)
        [ -n "$SRV_ADDR" ] && return 0
        alive "$SRV_PID" || break
        sleep 0.1
    done
    say "run.sh: $name did not report a listening address; its output:"
    tail -n 5 "$log" >&2
    stop_server
    return 1
}

scenario_mode() {
    case $1 in
        echo-*) echo echo ;;
        *) echo chat ;;
    esac
}

# ---------------------------------------------------------------- runs
nscen=$(wc -w <<<"$SCENARIOS")
total=$((nscen * ROUNDS * ${#servers[@]}))
say "== $total runs: scenarios [$SCENARIOS] x $ROUNDS rounds x servers [${servers[*]}]; $pinning"
say "   logs in $OUT_DIR"
n=0
started=$(date +%s)
for scenario in $SCENARIOS; do
    mode=$(scenario_mode "$scenario")
    extra=(--warmup "$WARMUP" --duration "$DURATION")
    case $scenario in
        fanout) extra+=(--inflight "$FANOUT_WINDOW") ;;
        idle) extra+=(--hold "$HOLD") ;;
        echo-small | echo-large) ;;
        *) die "unknown scenario '$scenario'" ;;
    esac
    for round in $(seq "$ROUNDS"); do
        for server in "${servers[@]}"; do
            n=$((n + 1))
            tag="$scenario.$server.$round"
            if ! start_server "$server" "$mode" "$OUT_DIR/$tag.server.log"; then
                printf '%s\t%s\t%s\tok\t0\n' "$scenario" "$server" "$round" >>"$RESULTS"
                continue
            fi
            "${PIN_LOADGEN[@]}" "$LOADGEN" "$scenario" --url "ws://$SRV_ADDR/chat" \
                --server-pid "$SRV_PID" "${extra[@]}" >"$OUT_DIR/$tag.loadgen.log" 2>&1
            rc=$?
            alive "$SRV_PID" || say "run.sh: $server died during $scenario (see $OUT_DIR/$tag.server.log)"
            stop_server
            line=$(grep '^RESULT ' "$OUT_DIR/$tag.loadgen.log" | tail -n1)
            if [ -z "$line" ]; then
                line="RESULT ok=0"
                say "run.sh: loadgen exited $rc without a result; its output:"
                tail -n 5 "$OUT_DIR/$tag.loadgen.log" >&2
            fi
            for kv in ${line#RESULT }; do
                printf '%s\t%s\t%s\t%s\t%s\n' "$scenario" "$server" "$round" "${kv%%=*}" "${kv#*=}" >>"$RESULTS"
            done
            get() { tr ' ' '\n' <<<"$line" | sed -n "s/^$1=//p"; }
            case $scenario in
                idle) summary="$(get rss_per_conn_bytes) B/conn, $(get connect_per_s) conn/s" ;;
                fanout) summary="$(get msgs_per_s) deliveries/s, missed $(get missed)" ;;
                *) summary="$(get msgs_per_s) msg/s, p99 $(get p99_us) us" ;;
            esac
            ok=$(get ok)
            say "[$n/$total] $scenario $server round $round: $summary; server CPU $(get server_cpu_pct)%, loadgen CPU $(get loadgen_cpu_pct)%$([ "$ok" = 1 ] || echo "  ** FAILED: see $OUT_DIR/$tag.loadgen.log **")"
        done
    done
done
elapsed=$(($(date +%s) - started))

# ---------------------------------------------------------------- table
# values SCENARIO SERVER KEY [all]: the KEY of each run (only ok runs unless "all").
values() {
    awk -F'\t' -v s="$1" -v v="$2" -v k="$3" -v all="${4:-}" '
        NR == FNR { if ($1 == s && $2 == v && $4 == "ok" && $5 == 1) good[$3] = 1; next }
        $1 == s && $2 == v && $4 == k && (all != "" || ($3 in good)) { print $5 }
    ' "$RESULTS" "$RESULTS"
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit; print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
maximum() { sort -g | tail -n1; }
fmt() { # value format
    [ -n "$1" ] || {
        echo "—"
        return
    }
    case $2 in
        int) awk -v x="$1" 'BEGIN {
                s = sprintf("%.0f", x); sign = ""
                if (s ~ /^-/) { sign = "-"; s = substr(s, 2) }
                out = ""
                while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
                print sign s out
            }' ;;
        *) awk -v x="$1" -v f="$2" 'BEGIN { printf f "\n", x }' ;;
    esac
}

has_rookery=0
peers=()
for s in "${servers[@]}"; do
    if [ "$s" = rookery ]; then has_rookery=1; else peers+=("$s"); fi
done

{
    echo "### rookery benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Medians of $ROUNDS runs; $DURATION s measured after $WARMUP s warm-up; $pinning;"
    echo "one loadgen thread; $(nproc) CPUs, $(uname -sr); fanout window $FANOUT_WINDOW; idle hold $HOLD s."
    if [ "$has_rookery" = 0 ]; then
        echo
        echo "**rookery was skipped** (no binary at \`$ROOKERY_BIN\`)."
    fi
    echo
    header="| scenario | metric | rookery"
    rule="|---|---|---:"
    for p in "${peers[@]}"; do
        header+=" | $p"
        rule+="|---:"
    done
    for p in "${peers[@]}"; do
        header+=" | rookery ÷ $p"
        rule+="|---:"
    done
    echo "$header |"
    echo "$rule|"
    for scenario in $SCENARIOS; do
        case $scenario in
            echo-*) metrics="msgs_per_s:messages/s:int:hi mb_per_s:MB/s_(payload_echoed):%.1f:hi p50_us:latency_p50_(µs):int:lo p99_us:latency_p99_(µs):int:lo server_cpu_pct:server_CPU_(%_of_a_core):%.0f:- server_cpu_us_per_msg:server_CPU_per_message_(µs):%.2f:lo loadgen_cpu_pct:loadgen_CPU_(%_of_a_core):%.0f:-" ;;
            fanout) metrics="msgs_per_s:deliveries/s:int:hi mb_per_s:MB/s_(payload_delivered):%.1f:hi p50_us:delivery_latency_p50_(µs):int:lo p99_us:delivery_latency_p99_(µs):int:lo missed:missed_deliveries_(max_of_runs):max:- server_cpu_pct:server_CPU_(%_of_a_core):%.0f:- server_cpu_us_per_msg:server_CPU_per_delivery_(µs):%.3f:lo loadgen_cpu_pct:loadgen_CPU_(%_of_a_core):%.0f:-" ;;
            idle) metrics="rss_per_conn_bytes:server_RSS_per_connection_(bytes):int:lo rss_after_kib:server_RSS_with_all_open_(KiB):int:lo connect_per_s:connections_set_up_per_second:int:hi" ;;
        esac
        metrics+=" errors:errors_(max_of_runs):max:- ok:runs_ok:count:-"
        for m in $metrics; do
            IFS=: read -r key label form kind <<<"$m"
            label=${label//_/ }
            row="| $scenario | $label"
            declare -A med=()
            for s in rookery "${peers[@]}"; do
                if [ "$s" = rookery ] && [ "$has_rookery" = 0 ]; then
                    med[$s]=
                    row+=" | skipped"
                    continue
                fi
                case $form in
                    max) v=$(values "$scenario" "$s" "$key" all | maximum) && cell=$(fmt "$v" int) ;;
                    count)
                        v=$(values "$scenario" "$s" ok all | awk '$1 == 1 { n++ } END { print n + 0 }')
                        cell="$v/$ROUNDS"
                        ;;
                    *)
                        if [ "$(values "$scenario" "$s" ok all | grep -c '^1$')" -gt 0 ]; then
                            v=$(values "$scenario" "$s" "$key" | median)
                            cell=$(fmt "$v" "$form")
                        else
                            # No run passed: show the failed runs' median, marked.
                            v=$(values "$scenario" "$s" "$key" all | median)
                            cell=$(fmt "$v" "$form")
                            [ -z "$v" ] || cell+=" ✗"
                        fi
                        ;;
                esac
                med[$s]=$v
                row+=" | $cell"
            done
            for p in "${peers[@]}"; do
                r=—
                if [ "$kind" != - ] && [ -n "${med[rookery]}" ] && [ -n "${med[$p]}" ]; then
                    r=$(awk -v a="${med[rookery]}" -v b="${med[$p]}" 'BEGIN { if (b + 0 == 0) print "—"; else printf "%.3g\n", a / b }')
                fi
                row+=" | $r"
            done
            echo "$row |"
            unset med
        done
    done
    echo
    echo "Ratios are rookery ÷ peer: above 1 is better for rookery in throughput rows"
    echo "(messages/s, MB/s, deliveries/s, connections/s); below 1 is better for rookery in"
    echo "latency, CPU-per-message and memory rows. Rows without a ratio are context."
    echo "Medians are over the runs that passed verification; ✗ marks a figure from runs that all failed"
    echo "(errors, missed deliveries or dropped connections: see the logs)."

    echo "server CPU comes from /proc/<pid>/stat over the measurement window (idle: over the hold);"
    echo "loadgen CPU from getrusage, to show the load generator is not the bottleneck."
} >"$TABLE"

say "== done in ${elapsed}s; table also in $TABLE"
cat "$TABLE"
