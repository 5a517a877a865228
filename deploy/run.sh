#!/usr/bin/env bash
# THE run command: services up, release build, then one lro-api and two
# lro-worker processes in the foreground. Ctrl-C (or SIGTERM) stops all three;
# if any of them exits by itself, the others are stopped too and the script
# fails, so a half-running system is never left behind.
#
# Configuration is the binaries' own LRO_* environment variables, which the
# children inherit as they are. LRO_HTTP_ADDR defaults to 127.0.0.1:8080 (REST),
# LRO_GRPC_ADDR to 127.0.0.1:8081 (gRPC).
# LRO_RUN_WAIT_SECS bounds the wait for the API to answer (default 60).
set -euo pipefail

# Work from the repo root whatever the caller's directory.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export LRO_HTTP_ADDR="${LRO_HTTP_ADDR:-127.0.0.1:8080}"
export LRO_GRPC_ADDR="${LRO_GRPC_ADDR:-127.0.0.1:8081}"
WAIT_SECS="${LRO_RUN_WAIT_SECS:-60}"
# Grace period for the children's own shutdown after SIGTERM, before SIGKILL.
# Workers drain for LRO_SHUTDOWN_GRACE (30s) plus LRO_STOP_GRACE (10s) at most before they exit.
STOP_GRACE_SECS=45

bash deploy/services.sh

cargo build --release --locked -p lro-api -p lro-worker

# Same place cargo just built into (a relative CARGO_TARGET_DIR is relative to
# this directory, where cargo ran).
BIN="${CARGO_TARGET_DIR:-target}/release"
for b in lro-api lro-worker; do
  [[ -x "$BIN/$b" ]] || {
    echo "run.sh: error: $BIN/$b not found after build" >&2
    exit 1
  }
done

PIDS=()

# Stop every child still alive: SIGTERM, a bounded grace period, then SIGKILL.
# (This and on_signal run from traps, which shellcheck cannot see.)
# shellcheck disable=SC2317
stop_children() {
  local pid deadline
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  deadline=$((SECONDS + STOP_GRACE_SECS))
  for pid in "${PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "run.sh: pid $pid ignored SIGTERM for ${STOP_GRACE_SECS}s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
}

# shellcheck disable=SC2317
on_signal() {
  trap - INT TERM EXIT
  echo "run.sh: stopping lro-api and workers" >&2
  stop_children
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
# Also on any unexpected exit of this script (set -e), never leave orphans.
trap 'stop_children' EXIT

"$BIN/lro-api" &
API_PID=$!
PIDS+=("$API_PID")

# Workers make up their own ids; an inherited LRO_WORKER_ID would give both the same. Each gets
# its own admin (health, metrics) port: 9091 and 9092 (the api's is LRO_ADMIN_ADDR, or 9090).
for admin_port in 9091 9092; do
  env -u LRO_WORKER_ID LRO_ADMIN_ADDR="127.0.0.1:$admin_port" "$BIN/lro-worker" &
  PIDS+=("$!")
done

# Any HTTP answer (even an error status) means the API is listening.
deadline=$((SECONDS + WAIT_SECS))
until curl -s -o /dev/null --max-time 2 "http://$LRO_HTTP_ADDR/v1/operations"; do
  if ! kill -0 "$API_PID" 2>/dev/null; then
    echo "run.sh: error: lro-api exited before answering on $LRO_HTTP_ADDR" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "run.sh: error: lro-api does not answer on http://$LRO_HTTP_ADDR after ${WAIT_SECS}s" >&2
    exit 1
  fi
  sleep 0.5
done
echo "lro api: http://$LRO_HTTP_ADDR (REST), $LRO_GRPC_ADDR (gRPC)"

# Block until a child exits (a signal interrupts this and runs its trap).
status=0
wait -n || status=$?
echo "run.sh: a child process exited (status $status); stopping the others" >&2
exit "$((status == 0 ? 1 : status))"
