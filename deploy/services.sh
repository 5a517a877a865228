#!/usr/bin/env bash
# Make this machine ready for lro: Redis on 127.0.0.1:6379 and RabbitMQ on
# 127.0.0.1:5672 (guest/guest, RabbitMQ's default user).
#
# Idempotent: a service that already answers is left alone, so it is safe to
# run before every test/run and from CI (CI=true, no stdin). No systemd runs on
# these machines, so a server that is down is started directly, with the same
# commands the machine itself uses at boot; a missing server is first installed
# from Debian's packages.
#
# LRO_REDIS_PORT / LRO_AMQP_PORT (default 6379 / 5672) change only which port is
# probed; a Redis that is down is started on LRO_REDIS_PORT, a RabbitMQ only on
# its default port (another port would need a node of its own).
# LRO_REDIS_WAIT_SECS / LRO_AMQP_WAIT_SECS bound the waits (default 30 / 90).
set -euo pipefail

readonly REDIS_DEFAULT_PORT=6379
readonly AMQP_DEFAULT_PORT=5672
REDIS_PORT="${LRO_REDIS_PORT:-$REDIS_DEFAULT_PORT}"
AMQP_PORT="${LRO_AMQP_PORT:-$AMQP_DEFAULT_PORT}"
REDIS_WAIT_SECS="${LRO_REDIS_WAIT_SECS:-30}"
AMQP_WAIT_SECS="${LRO_AMQP_WAIT_SECS:-90}"

# Nothing below may ever wait for a keyboard (CI has no stdin).
exec </dev/null

# Progress goes to stderr; the one summary line per service goes to stdout.
note() { printf '%s\n' "$*" >&2; }
die() {
  printf 'services.sh: error: %s\n' "$*" >&2
  exit 1
}

# Installing and starting system services needs root: run directly as root,
# else through sudo if it exists (-n: fail instead of prompting for a password).
as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "not root and no sudo; cannot run: $*"
  fi
}

# apt-get update at most once per run, and only when something must be installed.
APT_UPDATED=0
apt_install() {
  if [[ "$APT_UPDATED" -eq 0 ]]; then
    note "apt-get update"
    as_root apt-get update -q
    APT_UPDATED=1
  fi
  note "apt-get install $*"
  # env, not an exported variable: sudo would drop the latter.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# TCP connect probe; timeout guards against a connect that never completes.
# shellcheck disable=SC2016 # $1 is meant for the inner bash, not this one
tcp_open() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# Poll "$@" once a second until it succeeds or $1 seconds have passed.
wait_until() {
  local secs="$1"
  shift
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 1
  done
}

# ---------------------------------------------------------------- Redis

# PONG proves it is Redis and ready (not still loading); without redis-cli a
# TCP connect is the best probe there is.
redis_up() {
  if command -v redis-cli >/dev/null 2>&1; then
    [[ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
  else
    tcp_open "$REDIS_PORT"
  fi
}

# The machine's own start command. The data dir is never written (no RDB, no
# AOF) but Redis wants one; /tmp is the fallback where /var/lib cannot be used.
start_redis() {
  local dir=/var/lib/redis logdir=/var/log/redis logname=ci.log logfile
  if ! mkdir -p "$dir" 2>/dev/null || [[ ! -w "$dir" ]]; then
    dir=/tmp
  fi
  # A second Redis on another port must not share the default one's log.
  if [[ "$REDIS_PORT" != "$REDIS_DEFAULT_PORT" ]]; then
    logname="ci-$REDIS_PORT.log"
  fi
  if mkdir -p "$logdir" 2>/dev/null && [[ -w "$logdir" ]]; then
    logfile="$logdir/$logname"
  else
    logfile="/tmp/lro-redis-$logname"
  fi
  # "-::1" = bind IPv6 loopback only if the host has it (Redis >= 7); an older
  # Redis rejects that syntax, so retry with IPv4 loopback alone.
  if ! redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir "$dir" --logfile "$logfile"; then
    note "redis: start with IPv6 bind failed, retrying with 127.0.0.1 only"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
      --save "" --appendonly no --dir "$dir" --logfile "$logfile" ||
      die "redis-server failed to start (log: $logfile)"
  fi
  REDIS_LOGFILE="$logfile"
}

ensure_redis() {
  local did="" REDIS_LOGFILE=""
  if redis_up; then
    echo "redis: already running (127.0.0.1:$REDIS_PORT)"
    return
  fi
  if tcp_open "$REDIS_PORT"; then
    # Something holds the port but does not PONG yet (e.g. Redis still loading):
    # starting another server would only fail on the busy port, so just wait.
    note "redis: 127.0.0.1:$REDIS_PORT is open but does not answer PING yet; waiting"
    did="waited for it to finish starting"
  else
    if ! command -v redis-server >/dev/null 2>&1; then
      apt_install redis-server
      did="installed and "
      hash -r
      command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
    fi
    # The package's own scripts may have started it already.
    if redis_up; then
      echo "redis: ${did}found it already running (127.0.0.1:$REDIS_PORT)"
      return
    fi
    note "redis: starting on 127.0.0.1:$REDIS_PORT"
    start_redis
    did="${did}started"
  fi
  if ! wait_until "$REDIS_WAIT_SECS" redis_up; then
    [[ -n "$REDIS_LOGFILE" && -r "$REDIS_LOGFILE" ]] && tail -n 20 "$REDIS_LOGFILE" >&2
    die "redis does not answer on 127.0.0.1:$REDIS_PORT after ${REDIS_WAIT_SECS}s${REDIS_LOGFILE:+ (log: $REDIS_LOGFILE)}"
  fi
  echo "redis: $did (127.0.0.1:$REDIS_PORT)"
}

# ------------------------------------------------------------- RabbitMQ

# The AMQP listener opens only at the end of the node's boot (after the guest
# user exists), so an open port means ready for clients.
rabbitmq_up() {
  tcp_open "$AMQP_PORT"
}

# A node that is booting but not listening yet: starting a second one would
# only fail on the node name, so wait for this one instead.
rabbitmq_booting() {
  pgrep -f -- '-s rabbit boot' >/dev/null 2>&1
}

# On failure, show the end of the node's newest log so CI output says why.
rabbitmq_log_tail() {
  local f log=""
  for f in /var/log/rabbitmq/*.log; do
    if [[ -f "$f" && ( -z "$log" || "$f" -nt "$log" ) ]]; then
      log="$f"
    fi
  done
  if [[ -n "$log" && -r "$log" ]]; then
    note "--- last lines of $log"
    tail -n 30 "$log" >&2 || true
  fi
}

ensure_rabbitmq() {
  local did=""
  if rabbitmq_up; then
    echo "rabbitmq: already running (127.0.0.1:$AMQP_PORT)"
    return
  fi
  if [[ "$AMQP_PORT" != "$AMQP_DEFAULT_PORT" ]]; then
    die "nothing answers on 127.0.0.1:$AMQP_PORT, and services.sh starts RabbitMQ only on $AMQP_DEFAULT_PORT"
  fi
  if rabbitmq_booting; then
    note "rabbitmq: a node is already booting; waiting for it"
    did="waited for it to finish starting"
  else
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
      # Debian puts it in /usr/sbin, which a non-root PATH may lack.
      if [[ -x /usr/sbin/rabbitmq-server ]]; then
        PATH="$PATH:/usr/sbin"
      else
        apt_install rabbitmq-server
        did="installed and "
        hash -r
        [[ -x /usr/sbin/rabbitmq-server ]] && PATH="$PATH:/usr/sbin"
        command -v rabbitmq-server >/dev/null 2>&1 || die "rabbitmq-server still missing after apt-get install"
      fi
    fi
    # The package's own scripts may have started it already.
    if rabbitmq_up; then
      echo "rabbitmq: ${did}found it already running (127.0.0.1:$AMQP_PORT)"
      return
    fi
    if rabbitmq_booting; then
      did="${did}waited for it to finish starting"
    else
      note "rabbitmq: starting (waiting up to ${AMQP_WAIT_SECS}s)"
      # Debian's wrapper switches to the rabbitmq user itself, hence root.
      as_root rabbitmq-server -detached || {
        rabbitmq_log_tail
        die "rabbitmq-server -detached failed"
      }
      did="${did}started"
    fi
  fi
  if ! wait_until "$AMQP_WAIT_SECS" rabbitmq_up; then
    rabbitmq_log_tail
    die "rabbitmq does not answer on 127.0.0.1:$AMQP_PORT after ${AMQP_WAIT_SECS}s (logs: /var/log/rabbitmq/)"
  fi
  echo "rabbitmq: $did (127.0.0.1:$AMQP_PORT)"
}

# The fault tests signal and find processes with procps' kill and pkill.
ensure_procps() {
  if ! command -v pkill >/dev/null 2>&1; then
    apt_install procps
  fi
}

ensure_redis
ensure_rabbitmq
ensure_procps
