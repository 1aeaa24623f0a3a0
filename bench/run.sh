#!/usr/bin/env bash
# Benchmarks rookery against single-threaded peer servers (tokio-tungstenite,
# fastwebsockets, uWebSockets) and, optionally, against an older rookery
# binary, and prints a Markdown table. See bench/README.md.
#
# Everything is tunable from the environment; the defaults are the standard run:
#   ROOKERY_BIN    server under test      [<repo>/target/release/rookery]
#   BUILD_ROOKERY  1: cargo build --release in the repo first, 0: don't
#                  [1 when ROOKERY_BIN is the default path, else 0]
#   ROOKERY_OLD_BIN  a second rookery binary, run as "rookery-old" with the same
#                  flags; the table gets a "new ÷ old" column        [unset]
#   ROOKERY_ARGS   extra flags for both rookery binaries (e.g. "-q")  []
#   ROOKERY_IO     the driver "rookery" runs with (--io):
#                  epoll or uring; the table names it              [epoll]
#   ROOKERY_URING_BIN  rookery built with --features uring, run as
#                  "rookery-uring" with --io uring (SERVERS must name it)
#                  [<repo>/target/uring/release/rookery; built when missing]
#   UWS_BIN        the uWebSockets peer (built outside the repo, see README)
#                  [/tmp/uws/uws-peer]; skipped with a message if missing
#   SCENARIOS      "echo-small echo-rate echo-large fanout idle"; also "churn" and
#                  "churn-tcp"; "all" = the four plus churn; and over TLS,
#                  rookery only: "wss-echo-small wss-echo-large wss-fanout
#                  wss-idle" ("wss" = those four); permessage-deflate, rookery
#                  only, plain and --deflate interleaved: "fanout-deflate-chat
#                  fanout-deflate-json" ("fanout-deflate" = those two)
#   ROOKERY_TLS_BIN  rookery built with --features tls, for the wss-* scenarios
#                  [<repo>/target/tls/release/rookery]
#   BUILD_ROOKERY_TLS  1: cargo build --release --features tls --target-dir
#                  target/tls first, 0: don't [1 when ROOKERY_TLS_BIN is the
#                  default path and a wss-* scenario is asked for, else 0]
#   ROOKERY_DEFLATE_BIN  rookery built with --features deflate, run with
#                  --deflate in the fanout-deflate-* scenarios
#                  [<repo>/target/deflate/release/rookery]
#   BUILD_ROOKERY_DEFLATE  1: cargo build --release --features deflate
#                  --target-dir target/deflate first, 0: don't [1 when
#                  ROOKERY_DEFLATE_BIN is the default path and a
#                  fanout-deflate-* scenario is asked for, else 0]
#   SERVERS        "rookery [rookery-old] tokio-tungstenite fastwebsockets uws"
#                  (rookery-old when ROOKERY_OLD_BIN is set)
#   CHURN_TOTAL    churn: connections opened and closed in all    [1000000]
#   CHURN_ROUND    churn: connections open at once per round      [10000]
#   CHURN_QUIET    churn: seconds of quiet after the last round   [20]
#   RATE           echo-rate: messages/s offered to every server  [50000]
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
ROOKERY_OLD_BIN=${ROOKERY_OLD_BIN:-}
DEFAULT_ROOKERY_TLS_BIN=$REPO_DIR/target/tls/release/rookery
ROOKERY_TLS_BIN=${ROOKERY_TLS_BIN:-$DEFAULT_ROOKERY_TLS_BIN}
ROOKERY_ARGS=${ROOKERY_ARGS:-}
ROOKERY_IO=${ROOKERY_IO:-epoll}
ROOKERY_URING_BIN=${ROOKERY_URING_BIN:-$REPO_DIR/target/uring/release/rookery}
UWS_BIN=${UWS_BIN:-/tmp/uws/uws-peer}
SCENARIOS=${SCENARIOS:-"echo-small echo-rate echo-large fanout idle"}
[ "$SCENARIOS" = all ] && SCENARIOS="echo-small echo-rate echo-large fanout idle churn"
[ "$SCENARIOS" = wss ] && SCENARIOS="wss-echo-small wss-echo-large wss-fanout wss-idle"
SCENARIOS=" $SCENARIOS "
SCENARIOS=${SCENARIOS// fanout-deflate / fanout-deflate-chat fanout-deflate-json }
SCENARIOS=$(echo $SCENARIOS)
want_wss=0
case " $SCENARIOS " in *" wss-"*) want_wss=1 ;; esac
if [ "$ROOKERY_TLS_BIN" = "$DEFAULT_ROOKERY_TLS_BIN" ]; then
    BUILD_ROOKERY_TLS=${BUILD_ROOKERY_TLS:-$want_wss}
else
    BUILD_ROOKERY_TLS=${BUILD_ROOKERY_TLS:-0}
fi
DEFAULT_ROOKERY_DEFLATE_BIN=$REPO_DIR/target/deflate/release/rookery
ROOKERY_DEFLATE_BIN=${ROOKERY_DEFLATE_BIN:-$DEFAULT_ROOKERY_DEFLATE_BIN}
want_deflate=0
case " $SCENARIOS " in *" fanout-deflate-"*) want_deflate=1 ;; esac
if [ "$ROOKERY_DEFLATE_BIN" = "$DEFAULT_ROOKERY_DEFLATE_BIN" ]; then
    BUILD_ROOKERY_DEFLATE=${BUILD_ROOKERY_DEFLATE:-$want_deflate}
else
    BUILD_ROOKERY_DEFLATE=${BUILD_ROOKERY_DEFLATE:-0}
fi
if [ -n "$ROOKERY_OLD_BIN" ]; then
    SERVERS=${SERVERS:-"rookery rookery-old tokio-tungstenite fastwebsockets uws"}
else
    SERVERS=${SERVERS:-"rookery tokio-tungstenite fastwebsockets uws"}
fi
CHURN_TOTAL=${CHURN_TOTAL:-1000000}
CHURN_ROUND=${CHURN_ROUND:-10000}
CHURN_QUIET=${CHURN_QUIET:-20}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
DURATION=${DURATION:-5}
HOLD=${HOLD:-3}
FANOUT_WINDOW=${FANOUT_WINDOW:-128}
RATE=${RATE:-50000}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
OUT_DIR=${OUT_DIR:-$BENCH_DIR/target/results/$(date +%Y%m%d-%H%M%S)}

LOADGEN=$BENCH_DIR/target/release/loadgen
RESULTS=$OUT_DIR/results.tsv
TABLE=$OUT_DIR/table.md
CHURN_SVG_PY=$BENCH_DIR/churn_svg.py
RATIOS_SVG_PY=$BENCH_DIR/ratios_svg.py

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

case " ${SERVERS:-} " in
    *" rookery-uring "*)
        if [ ! -x "$ROOKERY_URING_BIN" ]; then
            say "== building rookery with io_uring (release, --features uring) into $REPO_DIR/target/uring"
            (cd "$REPO_DIR" && cargo build --release --features uring --target-dir target/uring --quiet) ||
                say "run.sh: warning: the uring build failed"
        fi
        ;;
esac

if [ "$BUILD_ROOKERY_TLS" = 1 ]; then
    say "== building rookery with TLS (release, --features tls) into $REPO_DIR/target/tls"
    if ! (cd "$REPO_DIR" && cargo build --release --features tls --target-dir target/tls --quiet); then
        say "run.sh: warning: rookery TLS build failed; using $ROOKERY_TLS_BIN only if it exists"
    fi
fi

if [ "$BUILD_ROOKERY_DEFLATE" = 1 ]; then
    say "== building rookery with permessage-deflate (release, --features deflate) into $REPO_DIR/target/deflate"
    if ! (cd "$REPO_DIR" && cargo build --release --features deflate --target-dir target/deflate --quiet); then
        say "run.sh: warning: rookery deflate build failed; using $ROOKERY_DEFLATE_BIN only if it exists"
    fi
fi
deflate_ok=0
if [ "$want_deflate" = 1 ]; then
    if [ -x "$ROOKERY_DEFLATE_BIN" ]; then
        deflate_ok=1
    else
        say "run.sh: rookery deflate binary not found at $ROOKERY_DEFLATE_BIN: the fanout-deflate-* scenarios run plain only"
        say "        (build it with 'cargo build --release --features deflate --target-dir target/deflate', or set ROOKERY_DEFLATE_BIN)"
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
        rookery-old)
            if [ -z "$ROOKERY_OLD_BIN" ]; then
                say "run.sh: rookery-old asked for but ROOKERY_OLD_BIN is not set: SKIPPING rookery-old"
            elif [ -x "$ROOKERY_OLD_BIN" ]; then
                servers+=("$s")
            else
                say "run.sh: no executable at ROOKERY_OLD_BIN=$ROOKERY_OLD_BIN: SKIPPING rookery-old"
            fi
            ;;
        uws)
            if [ -x "$UWS_BIN" ]; then
                servers+=("$s")
            else
                say "run.sh: uWebSockets peer not found at $UWS_BIN: SKIPPING uws"
                say "        (build it as bench/README.md describes, or set UWS_BIN)"
            fi
            ;;
        rookery-uring)
            if [ -x "$ROOKERY_URING_BIN" ]; then
                servers+=("$s")
            else
                say "run.sh: no executable at ROOKERY_URING_BIN=$ROOKERY_URING_BIN: SKIPPING rookery-uring"
            fi
            ;;
        tokio-tungstenite | fastwebsockets) servers+=("$s") ;;
        *) die "unknown server '$s'" ;;
    esac
done
[ ${#servers[@]} -gt 0 ] || die "no server to benchmark"

# ---------------------------------------------------------------- environment
# 10,000 idle connections need >10,000 descriptors in the loadgen (it raises
# its own soft limit too) and in every server, which inherit this shell's;
# rookery runs with --max-connections 20000, so give it room for that too
# (raising the hard limit works as root only; else the soft one goes up to it).
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 32768 ]; then
    ulimit -Hn 32768 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
    say "run.sh: warning: open-file limit is $(ulimit -n) (hard $(ulimit -Hn)); the idle and churn"
    say "        scenarios need ~10,100 for the server: raise the hard limit (e.g. ulimit -Hn 32768 as root)"
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

# ---------------------------------------------------------------- TLS
# The wss-* scenarios: rookery only (the peers have no TLS here), the TLS
# build, on a throw-away self-signed ECDSA P-256 certificate made here (the
# loadgen accepts any server certificate, see src/bin/loadgen/tls.rs).
TLS_CERT=$OUT_DIR/tls/cert.pem
TLS_KEY=$OUT_DIR/tls/key.pem
wss_ok=0
if [ "$want_wss" = 1 ]; then
    if [ ! -x "$ROOKERY_TLS_BIN" ]; then
        say "run.sh: rookery TLS binary not found at $ROOKERY_TLS_BIN: SKIPPING the wss-* scenarios"
        say "        (build it with 'cargo build --release --features tls --target-dir target/tls', or set ROOKERY_TLS_BIN)"
    elif ! command -v openssl >/dev/null; then
        say "run.sh: openssl not found (it makes the test certificate): SKIPPING the wss-* scenarios"
    elif mkdir -p "$OUT_DIR/tls" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$TLS_KEY" -out "$TLS_CERT" -days 7 -subj /CN=localhost \
        -addext subjectAltName=IP:127.0.0.1,DNS:localhost >"$OUT_DIR/tls/openssl.log" 2>&1; then
        wss_ok=1
    else
        say "run.sh: making the test certificate failed (see $OUT_DIR/tls/openssl.log): SKIPPING the wss-* scenarios"
    fi
fi

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

# start_server NAME MODE LOG SCENARIO: starts a fresh server; sets SRV_PID,
# SRV_ADDR and SRV_PATH (the WebSocket path to use).
start_server() {
    local name=$1 mode=$2 log=$3 scenario=$4
    local -a cmd
    local bin attempt port=
    SRV_PATH=/chat
    case $name in
        rookery | rookery-old | rookery-deflate | rookery-uring)
            bin=$ROOKERY_BIN
            [ "$name" = rookery-old ] && bin=$ROOKERY_OLD_BIN
            [ "$name" = rookery-uring ] && bin=$ROOKERY_URING_BIN
            [ "$name" = rookery-deflate ] && bin=$ROOKERY_DEFLATE_BIN
            case $scenario in wss-*) bin=$ROOKERY_TLS_BIN ;; esac
            cmd=("$bin" --mode "$mode" --listen 127.0.0.1:0 --path /chat --max-connections 20000)
            case $scenario in wss-*) cmd+=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY") ;; esac
            [ "$name" = rookery-deflate ] && cmd+=(--deflate)
            # The driver: named in the table's heading (rookery) or in the
            # server's name (rookery-uring); rookery-old may predate --io.
            case $name in
                rookery) cmd+=(--io "$ROOKERY_IO") ;;
                rookery-uring) cmd+=(--io uring) ;;
            esac
            # churn keeps every other default (handshake, idle and close
            # timeouts, pings): that is what it is meant to measure.
            case $scenario in churn*) ;; *) cmd+=(--idle-timeout 0) ;; esac
            cmd+=("${rookery_extra[@]}")
            ;;
        uws)
            # The uWS peer takes a port (no 0): echo on "/", chat on "/chat".
            [ "$mode" = echo ] && SRV_PATH=/
            cmd=("$UWS_BIN" PORT "$mode")
            ;;
        *) cmd=("$BENCH_DIR/target/release/peer-$name" --mode "$mode" --listen 127.0.0.1:0) ;;
    esac
    for attempt in 1 2 3 4 5 6 7 8; do
        if [ "$name" = uws ]; then
            # Below the ephemeral range, so no outgoing connection holds it.
            port=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
            cmd[1]=$port
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
        # Only the uWS peer is worth another try (its port may be taken).
        [ "$name" = uws ] && ! alive "$SRV_PID" && grep -q 'cannot listen' "$log" || break
        wait "$SRV_PID" 2>/dev/null
        SRV_PID=
    done
    say "run.sh: $name did not report a listening address; its output:"
    tail -n 5 "$log" >&2
    stop_server
    return 1
}

scenario_mode() {
    case ${1#wss-} in
        echo-*) echo echo ;;
        *) echo chat ;;
    esac
}

# servers_of SCENARIO: the servers it runs on (wss-*: rookery only, if the TLS
# binary and the certificate are there; fanout-deflate-*: rookery, then the
# deflate build with --deflate, if rookery was asked for).
servers_of() {
    case $1 in
        fanout-deflate-*)
            for s in "${servers[@]}"; do
                [ "$s" = rookery ] || continue
                echo rookery
                [ "$deflate_ok" = 1 ] && echo rookery-deflate
            done
            ;;
        wss-*)
            [ "$wss_ok" = 1 ] || return 0
            for s in "${servers[@]}"; do [ "$s" = rookery ] && echo rookery; done
            ;;
        *) printf '%s\n' "${servers[@]}" ;;
    esac
}

# runs_of SCENARIO: how many runs per server (churn is long and not noisy: once).
runs_of() {
    case $1 in
        churn*) echo 1 ;;
        *) echo "$ROUNDS" ;;
    esac
}

# ---------------------------------------------------------------- runs
total=0
for scenario in $SCENARIOS; do
    case $scenario in
        echo-small | echo-rate | echo-large | fanout | idle | churn | churn-tcp) ;;
        wss-echo-small | wss-echo-large | wss-fanout | wss-idle) ;;
        fanout-deflate-chat | fanout-deflate-json) ;;
        *) die "unknown scenario '$scenario'" ;;
    esac
    total=$((total + $(runs_of "$scenario") * $(servers_of "$scenario" | wc -l)))
done
say "== $total runs: scenarios [$SCENARIOS] x $ROUNDS rounds (churn: 1) x servers [${servers[*]}]$([ "$want_deflate" = 1 ] && [ "$deflate_ok" = 1 ] && echo " (fanout-deflate-*: rookery and rookery-deflate)"); $pinning"
say "   logs in $OUT_DIR"
n=0
started=$(date +%s)
for scenario in $SCENARIOS; do
    mode=$(scenario_mode "$scenario")
    lg_scenario=${scenario#wss-}
    scheme=ws
    case $scenario in wss-*) scheme=wss ;; esac
    mapfile -t run_servers < <(servers_of "$scenario")
    extra=(--warmup "$WARMUP" --duration "$DURATION")
    case ${scenario#wss-} in
        fanout) extra+=(--inflight "$FANOUT_WINDOW") ;;
        fanout-deflate-*)
            lg_scenario=fanout
            extra+=(--inflight "$FANOUT_WINDOW" --payload "${scenario#fanout-deflate-}")
            ;;
        echo-rate) extra+=(--rate "$RATE") ;;
        idle) extra+=(--hold "$HOLD") ;;
        churn | churn-tcp)
            lg_scenario=churn
            extra=(--total "$CHURN_TOTAL" --round "$CHURN_ROUND" --quiet "$CHURN_QUIET")
            [ "$scenario" = churn-tcp ] && extra+=(--close tcp)
            ;;
    esac
    for round in $(seq "$(runs_of "$scenario")"); do
        # Even rounds run the servers in reverse order, so that no server
        # always runs first (after a pause) or right after the same one.
        order=("${run_servers[@]}")
        if [ $((round % 2)) = 0 ]; then
            order=()
            for ((i = ${#run_servers[@]} - 1; i >= 0; i--)); do order+=("${run_servers[i]}"); done
        fi
        for server in "${order[@]}"; do
            n=$((n + 1))
            tag="$scenario.$server.$round"
            if ! start_server "$server" "$mode" "$OUT_DIR/$tag.server.log" "$scenario"; then
                printf '%s\t%s\t%s\tok\t0\n' "$scenario" "$server" "$round" >>"$RESULTS"
                continue
            fi
            per_server=()
            [ "$server" = rookery-deflate ] && per_server=(--deflate)
            "${PIN_LOADGEN[@]}" "$LOADGEN" "$lg_scenario" --url "$scheme://$SRV_ADDR$SRV_PATH" \
                --server-pid "$SRV_PID" "${extra[@]}" "${per_server[@]}" >"$OUT_DIR/$tag.loadgen.log" 2>&1
            rc=$?
            alive "$SRV_PID" || say "run.sh: $server died during $scenario (see $OUT_DIR/$tag.server.log)"
            stop_server
            # rookery logs two lines per connection at info level: of a churn
            # run's log keep the head and the tail, not 150 MB.
            log=$OUT_DIR/$tag.server.log
            if [ "$(stat -c %s "$log" 2>/dev/null || echo 0)" -gt 1048576 ]; then
                { head -n 200 "$log"; echo "[... $(wc -l <"$log") lines in all, cut by run.sh ...]"; tail -n 200 "$log"; } >"$log.cut"
                mv "$log.cut" "$log"
            fi
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
            case ${scenario#wss-} in
                idle) summary="$(get rss_per_conn_bytes) B/conn, $(get connect_per_s) conn/s" ;;
                churn*)
                    r10=$(get rss_round10_kib)
                    rq=$(get rss_quiet_kib)
                    summary="RSS $(get rss_start_kib) KiB at start, ${r10:-—} after round 10, $(get rss_last_kib) after round $(get rounds), ${rq:-—} after ${CHURN_QUIET} s quiet; $(get conn_per_s) conn/s"
                    ;;
                fanout) summary="$(get msgs_per_s) deliveries/s, missed $(get missed)" ;;
                fanout-deflate-*) summary="$(get msgs_per_s) deliveries/s, missed $(get missed), $(get wire_bytes_per_msg) wire B/delivery, $(get server_cpu_us_per_msg) us server CPU/delivery" ;;
                *) summary="$(get msgs_per_s) msg/s, p99 $(get p99_us) us" ;;
            esac
            case $scenario in
                churn*) ;;
                *) summary+="; server CPU $(get server_cpu_pct)%, loadgen CPU $(get loadgen_cpu_pct)%" ;;
            esac
            ok=$(get ok)
            say "[$n/$total] $scenario $server round $round: $summary$([ "$ok" = 1 ] || echo "  ** FAILED: see $OUT_DIR/$tag.loadgen.log **")"
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

# metrics_of SCENARIO: the table rows, key:label:format:kind (kind hi/lo: a ratio
# is shown, higher/lower is better; -: context only).
metrics_of() {
    case ${1#wss-} in
        echo-rate) echo "msgs_per_s:messages/s_(offered_${RATE}/s):int:hi p50_us:latency_p50_(µs):int:lo p99_us:latency_p99_(µs):int:lo p999_us:latency_p99.9_(µs):int:lo server_cpu_pct:server_CPU_(%_of_a_core):%.0f:- server_cpu_us_per_msg:server_CPU_per_message_(µs):%.2f:lo loadgen_cpu_pct:loadgen_CPU_(%_of_a_core):%.0f:-" ;;
        echo-*) echo "msgs_per_s:messages/s:int:hi mb_per_s:MB/s_(payload_echoed):%.1f:hi p50_us:latency_p50_(µs):int:lo p99_us:latency_p99_(µs):int:lo server_cpu_pct:server_CPU_(%_of_a_core):%.0f:- server_cpu_us_per_msg:server_CPU_per_message_(µs):%.2f:lo loadgen_cpu_pct:loadgen_CPU_(%_of_a_core):%.0f:-" ;;
        fanout-deflate-*) echo "msgs_per_s:deliveries/s:int:hi server_cpu_us_per_msg:server_CPU_per_delivery_(µs):%.3f:lo wire_bytes_per_msg:wire_bytes_per_delivery:%.1f:lo payload_bytes_per_msg:payload_bytes_per_delivery:%.1f:- compressed_pct:deliveries_compressed_(%):%.0f:- server_cpu_pct:server_CPU_(%_of_a_core):%.0f:- loadgen_cpu_pct:loadgen_CPU_(%_of_a_core):%.0f:- p50_us:delivery_latency_p50_(µs):int:lo p99_us:delivery_latency_p99_(µs):int:lo missed:missed_deliveries_(max_of_runs):max:-" ;;
        fanout) echo "msgs_per_s:deliveries/s:int:hi mb_per_s:MB/s_(payload_delivered):%.1f:hi p50_us:delivery_latency_p50_(µs):int:lo p99_us:delivery_latency_p99_(µs):int:lo missed:missed_deliveries_(max_of_runs):max:- server_cpu_pct:server_CPU_(%_of_a_core):%.0f:- server_cpu_us_per_msg:server_CPU_per_delivery_(µs):%.3f:lo loadgen_cpu_pct:loadgen_CPU_(%_of_a_core):%.0f:-" ;;
        idle) echo "rss_per_conn_bytes:server_RSS_per_connection_(bytes):int:lo rss_after_kib:server_RSS_with_all_open_(KiB):int:lo connect_per_s:connections_set_up_per_second:int:hi" ;;
        churn*) echo "rss_start_kib:server_RSS_at_start_(KiB):int:lo rss_round10_kib:RSS_after_round_10_(KiB):int:lo rss_round50_kib:RSS_after_round_50_(KiB):int:lo rss_last_kib:RSS_after_the_last_round_(KiB):int:lo rss_quiet_kib:RSS_after_the_quiet_spell_(KiB):int:lo growth_10_to_last_kib:growth_from_round_10_to_the_last_(KiB):int:- within_2mib:last_round_within_2_MiB_of_round_10_(1=yes):max:- conn_per_s:connections_opened_and_closed_per_second:int:hi" ;;
    esac
}

has_rookery=0
others=()
for s in "${servers[@]}"; do
    if [ "$s" = rookery ]; then has_rookery=1; else others+=("$s"); fi
done
# The rookery column is shown if rookery was asked for (marked "skipped"
# when its binary was missing); without it, no ratio columns either.
want_rookery=0
for s in $SERVERS; do [ "$s" = rookery ] && want_rookery=1; done
ratio_label() { [ "$1" = rookery-old ] && echo "new ÷ old" || echo "rookery ÷ $1"; }

{
    echo "### rookery benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "rookery runs with --io $ROOKERY_IO; rookery-uring (if present) with --io uring."
    echo "Medians of $ROUNDS runs (churn: one run); $DURATION s measured after $WARMUP s warm-up; $pinning;"
    echo "one loadgen thread; $(nproc) CPUs, $(uname -sr); fanout window $FANOUT_WINDOW; idle hold $HOLD s."
    case " $SCENARIOS " in
        *" churn"*) echo "churn: $CHURN_TOTAL connections in rounds of $CHURN_ROUND, then $CHURN_QUIET s quiet." ;;
    esac
    echo "rookery: \`$ROOKERY_BIN\`$( [ -n "$ROOKERY_OLD_BIN" ] && echo "; rookery-old: \`$ROOKERY_OLD_BIN\`" )."
    if [ "$has_rookery" = 0 ] && [ "$want_rookery" = 1 ]; then
        echo
        echo "**rookery was skipped** (no binary at \`$ROOKERY_BIN\`)."
    fi
    echo
    header="| scenario | metric"
    rule="|---|---"
    cols=("${others[@]}")
    if [ "$want_rookery" = 1 ]; then
        cols=(rookery "${others[@]}")
    fi
    for p in "${cols[@]}"; do
        header+=" | $p"
        rule+="|---:"
    done
    if [ "$want_rookery" = 1 ]; then
        for p in "${others[@]}"; do
            header+=" | $(ratio_label "$p")"
            rule+="|---:"
        done
    fi
    echo "$header |"
    echo "$rule|"
    for scenario in $SCENARIOS; do
        case $scenario in wss-* | fanout-deflate-*) continue ;; esac
        metrics=$(metrics_of "$scenario")
        metrics+=" errors:errors_(max_of_runs):max:- ok:runs_ok:count:-"
        for m in $metrics; do
            IFS=: read -r key label form kind <<<"$m"
            label=${label//_/ }
            row="| $scenario | $label"
            declare -A med=()
            for s in "${cols[@]}"; do
                if [ "$s" = rookery ] && [ "$has_rookery" = 0 ]; then
                    med[$s]=
                    row+=" | skipped"
                    continue
                fi
                case $form in
                    max) v=$(values "$scenario" "$s" "$key" all | maximum) && cell=$(fmt "$v" int) ;;
                    count)
                        v=$(values "$scenario" "$s" ok all | awk '$1 == 1 { n++ } END { print n + 0 }')
                        cell="$v/$(runs_of "$scenario")"
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
            for p in "${others[@]}"; do
                [ "$want_rookery" = 1 ] || break
                r=—
                if [ "$kind" != - ] && [ -n "${med[rookery]:-}" ] && [ -n "${med[$p]:-}" ]; then
                    r=$(awk -v a="${med[rookery]}" -v b="${med[$p]}" 'BEGIN { if (b + 0 == 0) print "—"; else printf "%.3g\n", a / b }')
                fi
                row+=" | $r"
            done
            echo "$row |"
            unset med
        done
    done
    echo
    echo "Ratios are rookery ÷ the other server (new ÷ old: rookery ÷ rookery-old): above 1 is better"
    echo "for rookery in throughput rows (messages/s, MB/s, deliveries/s, connections/s); below 1 is"
    echo "better for rookery in latency, CPU-per-message and memory rows. Rows without a ratio are context."
    echo "Medians are over the runs that passed verification; ✗ marks a figure from runs that all failed"
    echo "(errors, missed deliveries or dropped connections: see the logs)."

    echo "server CPU comes from /proc/<pid>/stat over the measurement window (idle: over the hold);"
    echo "loadgen CPU from getrusage, to show the load generator is not the bottleneck."

    # Round by round: each round runs the servers back to back, so a ratio
    # within a round is taken under one state of the machine; the spread of
    # those ratios says how far the medians' ratio can be trusted.
    # (Rows first: a run of churn alone, or of one round, has none.)
    rounds_rows=
    if [ "$has_rookery" = 1 ] && [ ${#others[@]} -gt 0 ] && [ "$ROUNDS" -gt 1 ]; then
        for scenario in $SCENARIOS; do
            case $scenario in wss-* | fanout-deflate-* | churn*) continue ;; esac
            for m in $(metrics_of "$scenario"); do
                IFS=: read -r key label form kind <<<"$m"
                case $key in msgs_per_s | mb_per_s | server_cpu_us_per_msg | p50_us | p99_us | rss_per_conn_bytes) ;; *) continue ;; esac
                [ "$key" = mb_per_s ] && [ "$scenario" != echo-large ] && continue
                [ "$key" = msgs_per_s ] && [ "$scenario" = echo-large ] && continue
                label=${label//_/ }
                for p in "${others[@]}"; do
                    round_row=$(awk -F'\t' -v s="$scenario" -v p="$p" -v k="$key" -v kind="$kind" -v label="$label" '
                        $1 == s && $4 == "ok" { if ($5 == 1) good[$2, $3] = 1; next }
                        $1 == s && $4 == k && $2 == "rookery" { a[$3] = $5 }
                        $1 == s && $4 == k && $2 == p { b[$3] = $5 }
                        END {
                            n = 0; ahead = 0
                            for (r in a) {
                                if (!(r in b) || !(("rookery", r) in good) || !((p, r) in good) || b[r] + 0 == 0) continue
                                x = a[r] / b[r]; q[++n] = x
                                if ((kind == "hi" && x > 1) || (kind == "lo" && x < 1)) ahead++
                            }
                            if (n == 0) exit
                            for (i = 2; i <= n; i++) { v = q[i]; for (j = i - 1; j >= 1 && q[j] > v; j--) q[j + 1] = q[j]; q[j + 1] = v }
                            med = (n % 2) ? q[(n + 1) / 2] : (q[n / 2] + q[n / 2 + 1]) / 2
                            printf "| %s | %s | %s | %.3g | %.3g – %.3g | %d of %d |\n", s, label, p, med, q[1], q[n], ahead, n
                        }' "$RESULTS")
                    [ -n "$round_row" ] && rounds_rows+=$round_row$'\n'
                done
            done
        done
    fi
    if [ -n "$rounds_rows" ]; then
        echo
        echo "#### Round by round"
        echo
        echo "Each round runs the servers back to back (odd rounds rookery first, even rounds last). Per"
        echo "round, rookery's figure ÷ the other server's; then the median of those ratios, their range,"
        echo "and in how many rounds rookery was ahead (rounds where both runs passed)."
        echo
        echo "| scenario | metric | vs | median ratio | lowest – highest | rookery ahead |"
        echo "|---|---|---|---:|---:|---:|"
        printf '%s' "$rounds_rows"
    fi

    # wss next to ws, rookery only: the cost of TLS.
    wss_list=()
    for scenario in $SCENARIOS; do
        case $scenario in wss-*) wss_list+=("$scenario") ;; esac
    done
    if [ ${#wss_list[@]} -gt 0 ]; then
        echo
        echo "#### rookery over TLS (wss) against ws"
        echo
        if [ "$wss_ok" = 1 ] && [ "$has_rookery" = 1 ]; then
            echo "rookery with TLS: \`$ROOKERY_TLS_BIN\` (--tls-cert/--tls-key, self-signed ECDSA P-256); the loadgen's TLS:"
            echo "rustls (ring), $(values "${wss_list[0]}" rookery tls all | head -n1)."
        else
            echo "**The wss-* scenarios were skipped** (no TLS binary, no certificate, or rookery not run)."
        fi
        echo
        echo "| scenario | metric | ws | wss | wss ÷ ws |"
        echo "|---|---|---:|---:|---:|"
        for scenario in "${wss_list[@]}"; do
            base=${scenario#wss-}
            for m in $(metrics_of "$scenario") "errors:errors_(max_of_runs):max:-" "ok:runs_ok:count:-"; do
                IFS=: read -r key label form kind <<<"$m"
                label=${label//_/ }
                row="| $base | $label"
                declare -A med=()
                for sc in "$base" "$scenario"; do
                    case $form in
                        max) v=$(values "$sc" rookery "$key" all | maximum) && cell=$(fmt "$v" int) ;;
                        count)
                            v=$(values "$sc" rookery ok all | awk '$1 == 1 { n++ } END { print n + 0 }')
                            cell="$v/$(values "$sc" rookery ok all | wc -l)"
                            [ "$cell" = 0/0 ] && cell=— v=
                            ;;
                        *)
                            if [ "$(values "$sc" rookery ok all | grep -c '^1$')" -gt 0 ]; then
                                v=$(values "$sc" rookery "$key" | median)
                                cell=$(fmt "$v" "$form")
                            else
                                v=$(values "$sc" rookery "$key" all | median)
                                cell=$(fmt "$v" "$form")
                                [ -z "$v" ] || cell+=" ✗"
                            fi
                            ;;
                    esac
                    med[$sc]=$v
                    row+=" | $cell"
                done
                r=—
                if [ "$kind" != - ] && [ -n "${med[$base]:-}" ] && [ -n "${med[$scenario]:-}" ]; then
                    r=$(awk -v a="${med[$scenario]}" -v b="${med[$base]}" 'BEGIN { if (b + 0 == 0) print "—"; else printf "%.3g\n", a / b }')
                fi
                echo "$row | $r |"
                unset med
            done
        done
        echo
        echo "ws is the same scenario over plain TCP in this run (— if it was not asked for: add it to SCENARIOS)."
        echo "wss ÷ ws below 1 in throughput rows, above 1 in latency, CPU and memory rows, is what TLS costs."
    fi

    # permessage-deflate: rookery plain against the deflate build with --deflate.
    deflate_list=()
    for scenario in $SCENARIOS; do
        case $scenario in fanout-deflate-*) deflate_list+=("$scenario") ;; esac
    done
    if [ ${#deflate_list[@]} -gt 0 ]; then
        echo
        echo "#### rookery chat fan-out: plain against permessage-deflate"
        echo
        if [ "$deflate_ok" = 1 ] && [ "$has_rookery" = 1 ]; then
            echo "plain: \`$ROOKERY_BIN\`; deflate: \`$ROOKERY_DEFLATE_BIN --deflate\`, loadgen \`--deflate\`."
        else
            echo "**The deflate runs were skipped** (no deflate binary, or rookery not run)."
        fi
        echo
        echo "| payload | metric | plain | deflate | deflate ÷ plain |"
        echo "|---|---|---:|---:|---:|"
        for scenario in "${deflate_list[@]}"; do
            payload=${scenario#fanout-deflate-}
            for m in $(metrics_of "$scenario") "errors:errors_(max_of_runs):max:-" "ok:runs_ok:count:-"; do
                IFS=: read -r key label form kind <<<"$m"
                label=${label//_/ }
                row="| $payload | $label"
                declare -A med=()
                for sv in rookery rookery-deflate; do
                    case $form in
                        max) v=$(values "$scenario" "$sv" "$key" all | maximum) && cell=$(fmt "$v" int) ;;
                        count)
                            v=$(values "$scenario" "$sv" ok all | awk '$1 == 1 { n++ } END { print n + 0 }')
                            cell="$v/$(values "$scenario" "$sv" ok all | wc -l)"
                            [ "$cell" = 0/0 ] && cell=— v=
                            ;;
                        *)
                            if [ "$(values "$scenario" "$sv" ok all | grep -c '^1$')" -gt 0 ]; then
                                v=$(values "$scenario" "$sv" "$key" | median)
                                cell=$(fmt "$v" "$form")
                            else
                                v=$(values "$scenario" "$sv" "$key" all | median)
                                cell=$(fmt "$v" "$form")
                                [ -z "$v" ] || cell+=" ✗"
                            fi
                            ;;
                    esac
                    med[$sv]=$v
                    row+=" | $cell"
                done
                r=—
                if [ "$kind" != - ] && [ -n "${med[rookery]:-}" ] && [ -n "${med[rookery-deflate]:-}" ]; then
                    r=$(awk -v a="${med[rookery-deflate]}" -v b="${med[rookery]}" 'BEGIN { if (b + 0 == 0) print "—"; else printf "%.3g\n", a / b }')
                fi
                echo "$row | $r |"
                unset med
            done
        done
        echo
        echo "chat: varied chat lines of 60-120 bytes (plain and JSON); json: JSON documents of 3.9-4 KiB."
        echo "Wire bytes are the frames as received (header + payload, compressed or not); payload bytes"
        echo "after inflating. deflate ÷ plain below 1 in CPU, bytes and latency rows is what compression saves."
    fi
} >"$TABLE"

# ---------------------------------------------------------------- peers chart
# rookery against each peer, scenario by scenario (bench/ratios_svg.py, from
# the table just written; python3 standard library only).
if [ "$has_rookery" = 1 ] && command -v python3 >/dev/null; then
    for p in "${others[@]}"; do
        if python3 "$RATIOS_SVG_PY" "$TABLE" "$p" "$OUT_DIR/ratios-$p.svg" 2>/dev/null; then
            say "== rookery against $p, as a chart: $OUT_DIR/ratios-$p.svg"
        fi
    done
fi

# ---------------------------------------------------------------- churn curves
# One TSV per churn scenario: round, connections so far, then RSS (KiB) per
# server after that round; a last row "quiet" with RSS after the quiet spell.
# Then an SVG chart of it (bench/churn_svg.py, python3 standard library only).
for scenario in $SCENARIOS; do
    case $scenario in churn*) ;; *) continue ;; esac
    tsv=$OUT_DIR/$scenario.tsv
    files=()
    names=()
    for s in "${servers[@]}"; do
        f=$OUT_DIR/$scenario.$s.1.loadgen.log
        [ -s "$f" ] && grep -q '^ROUND' "$f" || continue
        files+=("$f")
        names+=("$s")
    done
    [ ${#files[@]} -gt 0 ] || continue
    awk -F'\t' -v names="${names[*]}" '
        FNR == 1 { k++ }
        $1 == "ROUND" { conns[$2] = $3; rss[$2, k] = $4; if ($2 + 0 > last) last = $2 + 0; if (!($2 in seen)) { seen[$2] = 1; order[++nr] = $2 } }
        $1 == "QUIET" { quiet[k] = $3 }
        END {
            n = split(names, nm, " ")
            printf "round\tconnections"
            for (i = 1; i <= n; i++) printf "\t%s", nm[i]
            printf "\n"
            for (r = 0; r <= last; r++) {
                if (!(r in conns)) continue
                printf "%d\t%d", r, conns[r]
                for (i = 1; i <= n; i++) printf "\t%s", ((r, i) in rss) ? rss[r, i] : ""
                printf "\n"
            }
            printf "quiet\t%d", conns[last]
            for (i = 1; i <= n; i++) printf "\t%s", (i in quiet) ? quiet[i] : ""
            printf "\n"
        }' "${files[@]}" >"$tsv"
    say "== $scenario: RSS per round in $tsv"
    if command -v python3 >/dev/null; then
        close=handshake
        [ "$scenario" = churn-tcp ] && close="bare TCP close"
        if python3 "$CHURN_SVG_PY" "$tsv" "$OUT_DIR/$scenario.svg" \
            --title "Server RSS, $(fmt "$CHURN_TOTAL" int) connections opened and closed in rounds of $(fmt "$CHURN_ROUND" int) ($close)" \
            --quiet "$CHURN_QUIET"; then
            say "   chart in $OUT_DIR/$scenario.svg"
        else
            say "run.sh: warning: drawing $OUT_DIR/$scenario.svg failed"
        fi
    else
        say "run.sh: python3 not found: no chart for $scenario"
    fi
done

say "== done in ${elapsed}s; table also in $TABLE"
cat "$TABLE"
