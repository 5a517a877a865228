#!/usr/bin/env bash
# A private Redis Cluster on loopback — 3 masters, each with a replica — for trying lro on a
# cluster and for the tests' fault runs. It never touches the machine's own Redis: its nodes have
# their own ports and directories, and are stopped by the PIDs this script started.
#
#   deploy/redis-cluster.sh start DIR   start 6 nodes in DIR, create the cluster, wait for
#                                       cluster_state:ok; prints the LRO_REDIS_URL list (also in
#                                       DIR/urls), masters first
#   deploy/redis-cluster.sh kill DIR N  kill -9 node N (0-based; 0-2 start as masters)
#   deploy/redis-cluster.sh up DIR N    start node N again (it rejoins, as a replica if its
#                                       replica was promoted meanwhile)
#   deploy/redis-cluster.sh stop DIR    stop every node, remove DIR
#
# With REDIS_CLUSTER_TLS_CERT, REDIS_CLUSTER_TLS_KEY and REDIS_CLUSTER_TLS_CA set (PEM files) at
# start, the nodes speak TLS only (clients, replication and the cluster bus) and the URLs printed
# are rediss://.
#
# A short cluster-node-timeout (2 s): a lost master's replica takes over in about 4-5 s.
set -euo pipefail

NODES=6
die() { echo "redis-cluster: $*" >&2; exit 1; }

# The TLS settings of the cluster in DIR (none, or the files given at start).
tls_server=()
tls_cli=()
load_tls() {
  [[ -f $DIR/tls ]] || return 0
  local cert key ca
  { read -r cert; read -r key; read -r ca; } <"$DIR/tls"
  tls_server=(--tls-cert-file "$cert" --tls-key-file "$key" --tls-ca-cert-file "$ca"
    --tls-auth-clients no --tls-cluster yes --tls-replication yes)
  tls_cli=(--tls --cacert "$ca")
}
cli() { redis-cli "${tls_cli[@]}" "$@"; }

start_node() {
  local n=$1 port ports
  port=$(cat "$DIR/n$n/port")
  if ((${#tls_server[@]})); then
    ports=(--port 0 --tls-port "$port" "${tls_server[@]}")
  else
    ports=(--port "$port")
  fi
  # --daemonize no and setsid: the PID recorded is the server's own.
  setsid redis-server "${ports[@]}" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$DIR/n$n/nodes.conf" --cluster-node-timeout 2000 \
    --dir "$DIR/n$n" --save "" --appendonly no --daemonize no \
    --logfile "$DIR/n$n/redis.log" </dev/null >/dev/null 2>&1 &
  echo $! >"$DIR/n$n/pid"
}

await_ping() {
  local port
  port=$(cat "$DIR/n$1/port")
  for _ in $(seq 1 100); do
    [[ $(cli -p "$port" ping 2>/dev/null) == PONG ]] && return 0
    sleep 0.1
  done
  die "node $1 did not start: see $DIR/n$1/redis.log"
}

cmd=${1:-}
DIR=${2:-}
[[ -n $cmd && -n $DIR ]] || die "usage: $0 start|kill|up|stop DIR [N]"

case $cmd in
start)
  command -v redis-server >/dev/null || die "redis-server is not installed (run deploy/services.sh)"
  [[ ! -e $DIR/urls ]] || die "$DIR already holds a cluster"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  scheme=redis
  if [[ -n ${REDIS_CLUSTER_TLS_CERT:-} ]]; then
    printf '%s\n' "$REDIS_CLUSTER_TLS_CERT" "${REDIS_CLUSTER_TLS_KEY:?}" "${REDIS_CLUSTER_TLS_CA:?}" >"$DIR/tls"
    scheme=rediss
  fi
  load_tls
  # Free ports whose cluster bus port (+10000) is free too.
  read -r -a ports < <(python3 - "$NODES" <<'EOF'
import socket, sys
held, ports = [], []
while len(ports) < int(sys.argv[1]):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    if port + 10000 > 65535:
        s.close()
        continue
    bus = socket.socket()
    try:
        bus.bind(("127.0.0.1", port + 10000))
    except OSError:
        s.close()
        continue
    held += [s, bus]
    ports.append(port)
print(" ".join(map(str, ports)))
EOF
  )
  addrs=()
  for ((n = 0; n < NODES; n++)); do
    mkdir -p "$DIR/n$n"
    echo "${ports[n]}" >"$DIR/n$n/port"
    start_node "$n"
    addrs+=("127.0.0.1:${ports[n]}")
  done
  for ((n = 0; n < NODES; n++)); do await_ping "$n"; done
  cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.out" 2>&1 ||
    die "the cluster was not created: see $DIR/create.out"
  for _ in $(seq 1 200); do
    # Ready when the state is ok and every node knows the roles `create` gave: 3 masters, each
    # with its replica (gossip takes a moment after the slots are assigned), and every replica
    # has synced with its master (one that has not cannot take over when its master dies).
    roles=$(cli -p "${ports[0]}" cluster nodes 2>/dev/null | grep -c ' slave ' || true)
    synced=0
    for p in "${ports[@]}"; do
      cli -p "$p" info replication 2>/dev/null | grep -q '^master_link_status:up' &&
        synced=$((synced + 1))
    done
    if ((roles == NODES / 2 && synced == NODES / 2)) &&
      cli -p "${ports[0]}" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then
      urls=()
      for a in "${addrs[@]}"; do urls+=("$scheme://$a"); done
      (IFS=,; echo "${urls[*]}") >"$DIR/urls"
      cat "$DIR/urls"
      exit 0
    fi
    sleep 0.1
  done
  die "the cluster did not reach cluster_state:ok: see $DIR"
  ;;
kill)
  n=${3:?node number}
  if [[ -f $DIR/n$n/pid ]]; then
    kill -s KILL "$(cat "$DIR/n$n/pid")" 2>/dev/null || true
    rm -f "$DIR/n$n/pid"
  fi
  ;;
up)
  n=${3:?node number}
  load_tls
  start_node "$n"
  await_ping "$n"
  ;;
stop)
  [[ -d $DIR ]] || exit 0
  for pid in "$DIR"/n*/pid; do
    [[ -f $pid ]] && kill -s KILL "$(cat "$pid")" 2>/dev/null || true
  done
  rm -rf "$DIR"
  ;;
*)
  die "unknown command $cmd"
  ;;
esac
