# The step runner of .ci/run (sourced, not run): steps in the foreground or
# side by side, each one timed, and a table of them all at the end.
#
#   step NAME -- CMD [ARG...]  runs CMD now, its output straight through;
#                              stops the run if it fails
#   bg NAME -- CMD [ARG...]    starts CMD in the background, its output into
#                              a log file of its own
#   join [NAME...]             waits for the steps started with bg (those
#                              named, or all), prints each one's log as it
#                              ends, and stops the run (once they have all
#                              ended) if any of them failed
#
# CMD is a command or a shell function; it runs in a child shell with
# `set -euo pipefail`, so a function stops at its first failing command. Each
# step prints `=== NAME` with the second of the run it started at, and its
# duration when it ends. When the run ends, passed or not, the EXIT trap
# prints every step's start, seconds and result, and the logs of the steps
# that failed are shown last (their last 100 lines; the files are kept in
# CI_LOG_DIR). A failed foreground step stops the background ones still
# running (each is a process group of its own: job control is on).

set -m
ci_t0=$SECONDS
CI_LOG_DIR=${CI_LOG_DIR:-$(mktemp -d /tmp/rookery-ci.XXXXXX)}
ci_rows=()    # "NAME|START|SECONDS|RESULT", in the order the steps ended
ci_failed=()  # names of failed steps
ci_failed_logs=()
declare -A ci_bg_name=() ci_bg_start=() ci_bg_log=()

# _ci_args NAME -- CMD...: checks the form; sets ci_name and ci_cmd.
_ci_args() {
  ci_name=$1
  shift
  if [ "${1:-}" != -- ] || [ $# -lt 2 ]; then
    echo "ci: usage: step|bg NAME -- COMMAND [ARG...] (got: $ci_name $*)" >&2
    exit 2
  fi
  shift
  ci_cmd=("$@")
}

_ci_end() { # NAME START STATUS [LOG [END]]
  local end=${5:-$SECONDS} result=ok secs
  secs=$((end - $2))
  if [ "$3" -ne 0 ]; then
    result="FAILED ($3)"
    ci_failed+=("$1")
    ci_failed_logs+=("${4:-}")
  fi
  ci_rows+=("$1|$(($2 - ci_t0))|$secs|$result")
  printf '=== %s: %s after %ss (at %ss)\n' "$1" "$result" "$secs" "$((end - ci_t0))"
}

step() {
  _ci_args "$@"
  local start=$SECONDS status=0
  printf '\n=== %s (at %ss)\n' "$ci_name" "$((start - ci_t0))"
  # A child, not started in a condition, so that `set -e` holds inside it.
  ("${ci_cmd[@]}") </dev/null &
  wait $! || status=$?
  _ci_end "$ci_name" "$start" "$status"
  [ "$status" -eq 0 ] || exit 1
}

# _ci_job LOG CMD...: runs CMD in a child (so `set -e` holds inside it) and
# notes the second it ended in LOG.end, since join may only reap it later.
_ci_job() {
  local log=$1 status=0
  shift
  ("$@") &
  wait $! || status=$?
  echo "$SECONDS" >"$log.end"
  return "$status"
}

bg() {
  _ci_args "$@"
  local log pid
  log=$CI_LOG_DIR/$(printf '%s' "$ci_name" | tr -c 'A-Za-z0-9._-' '_').log
  _ci_job "$log" "${ci_cmd[@]}" </dev/null >"$log" 2>&1 &
  pid=$!
  ci_bg_name[$pid]=$ci_name ci_bg_start[$pid]=$SECONDS ci_bg_log[$pid]=$log
  printf '\n=== %s: started in the background (at %ss; log %s)\n' \
    "$ci_name" "$((SECONDS - ci_t0))" "$log"
}

join() {
  local pid status before=${#ci_failed[@]} name pids
  while :; do
    pids=()
    for pid in "${!ci_bg_name[@]}"; do
      if [ $# -eq 0 ]; then
        pids+=("$pid")
      else
        for name in "$@"; do [ "${ci_bg_name[$pid]}" != "$name" ] || pids+=("$pid"); done
      fi
    done
    [ ${#pids[@]} -gt 0 ] || break
    status=0
    pid=
    wait -n -p pid "${pids[@]}" || status=$?
    [ -n "$pid" ] || { echo "ci: wait -n returned no job" >&2; exit 2; }
    printf '\n=== %s: log\n' "${ci_bg_name[$pid]}"
    cat "${ci_bg_log[$pid]}"
    _ci_end "${ci_bg_name[$pid]}" "${ci_bg_start[$pid]}" "$status" "${ci_bg_log[$pid]}" \
      "$(cat "${ci_bg_log[$pid]}.end" 2>/dev/null || echo "$SECONDS")"
    unset "ci_bg_name[$pid]" "ci_bg_start[$pid]" "ci_bg_log[$pid]"
  done
  [ ${#ci_failed[@]} -eq "$before" ] || exit 1
}

_ci_summary() {
  local status=$? pid row i name start secs result
  trap - EXIT
  for pid in "${!ci_bg_name[@]}"; do
    echo "ci: stopping the background step ${ci_bg_name[$pid]}"
    kill -TERM -- "-$pid" 2>/dev/null || true
    ci_rows+=("${ci_bg_name[$pid]}|$((ci_bg_start[$pid] - ci_t0))|$((SECONDS - ci_bg_start[$pid]))|stopped")
  done
  wait 2>/dev/null || true
  for i in "${!ci_failed[@]}"; do
    if [ -n "${ci_failed_logs[$i]}" ]; then
      printf '\n=== %s FAILED: the end of its log (%s)\n' "${ci_failed[$i]}" "${ci_failed_logs[$i]}"
      tail -n 100 "${ci_failed_logs[$i]}"
    fi
  done
  printf '\n=== steps (seconds; the whole run took %ss)\n' "$((SECONDS - ci_t0))"
  printf '| step | started at | seconds | result |\n|---|---:|---:|---|\n'
  for row in "${ci_rows[@]}"; do
    IFS='|' read -r name start secs result <<<"$row"
    printf '| %s | %s | %s | %s |\n' "$name" "$start" "$secs" "$result"
  done
  if [ ${#ci_failed[@]} -gt 0 ]; then
    printf 'ci: FAILED: %s\n' "${ci_failed[*]}"
    [ "$status" -ne 0 ] || status=1
  elif [ "$status" -eq 0 ]; then
    echo "ci: passed"
  fi
  exit "$status"
}
trap _ci_summary EXIT
