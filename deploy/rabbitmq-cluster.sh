#!/usr/bin/env bash
# A private RabbitMQ cluster on loopback, for trying lro on a cluster and for the tests' fault
# runs. It never touches the machine's own broker: its nodes have their own names, ports, data,
# cookie and epmd, and are stopped by the PIDs this script started.
#
#   deploy/rabbitmq-cluster.sh start DIR   start LRO_CLUSTER_NODES (default 3) nodes in DIR and join
#                                          them; prints the LRO_AMQP_URL list (also in DIR/urls)
#   deploy/rabbitmq-cluster.sh kill DIR N  kill -9 node N (0-based): no clean shutdown
#   deploy/rabbitmq-cluster.sh up DIR N    start node N again from its data; waits until it runs
#                                          in the cluster again
#   deploy/rabbitmq-cluster.sh await-queue DIR Q  until quorum queue Q is online on every node
#   deploy/rabbitmq-cluster.sh stop DIR    stop every node and the epmd, remove DIR
#
# Needs the rabbitmq-server package (deploy/services.sh installs it) and python3 (free ports).
set -euo pipefail

RABBIT=/usr/lib/rabbitmq/bin
die() { echo "rabbitmq-cluster: $*" >&2; exit 1; }

# ctl N ARGS...: rabbitmqctl against node N, with the node's cookie and the private epmd.
ctl() {
  local n=$1
  shift
  # shellcheck disable=SC1090
  (source "$DIR/n$n/env" && HOME="$NODE_HOME" ERL_EPMD_PORT="$EPMD_PORT" \
    timeout 60 "$RABBIT/rabbitmqctl" -q -n "$RABBITMQ_NODENAME" "$@")
}

# start_node N: starts node N's server in the background and records its PID.
start_node() {
  local n=$1
  # shellcheck disable=SC1090
  (
    source "$DIR/n$n/env"
    export HOME="$NODE_HOME" ERL_EPMD_PORT="$EPMD_PORT" RABBITMQ_NODENAME RABBITMQ_NODE_PORT \
      RABBITMQ_DIST_PORT RABBITMQ_MNESIA_BASE RABBITMQ_LOG_BASE RABBITMQ_ENABLED_PLUGINS_FILE \
      RABBITMQ_CONFIG_FILE RABBITMQ_PID_FILE
    setsid "$RABBIT/rabbitmq-server" >>"$DIR/n$n/server.out" 2>&1 </dev/null &
    echo $! >"$DIR/n$n/server.pid"
  )
}

# kill_node N: the server script's process group, then the Erlang VM, which leaves that group and
# is found by its own home directory (this node's, nobody else's).
kill_node() {
  local n=$1 pid
  pid=$(cat "$DIR/n$n/server.pid" 2>/dev/null || true)
  if [[ -n $pid ]]; then
    kill -s KILL -- "-$pid" 2>/dev/null || true
  fi
  pkill -KILL -f "home $DIR/n$n/home" 2>/dev/null || true
  rm -f "$DIR/n$n/server.pid"
}

# running N: how many nodes node N sees running in its cluster.
running() {
  ctl "$1" cluster_status --formatter json 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("running_nodes", [])))' \
      2>/dev/null || echo 0
}

# await_node N: until node N's broker runs. `await_startup` fails at once while the Erlang node
# has not yet registered, so it is asked again until it waits (2 minutes in all).
await_node() {
  local deadline=$((SECONDS + 120))
  until ctl "$1" await_startup >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "node $1 did not start: see $DIR/n$1/"
    sleep 0.5
  done
}

cmd=${1:-}
DIR=${2:-}
[[ -n $cmd && -n $DIR ]] || die "usage: $0 start|kill|up|stop DIR [N]"

case $cmd in
start)
  nodes=${LRO_CLUSTER_NODES:-3}
  [[ -x $RABBIT/rabbitmq-server ]] || die "rabbitmq-server is not installed (run deploy/services.sh)"
  [[ ! -e $DIR/urls ]] || die "$DIR already holds a cluster"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  # Free ports: one epmd, and an AMQP and a distribution port per node.
  read -r -a ports < <(python3 - "$((1 + 2 * nodes))" <<'EOF'
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
  )
  epmd_port=${ports[0]}
  echo "$epmd_port" >"$DIR/epmd.port"
  setsid epmd -port "$epmd_port" -address 127.0.0.1 >"$DIR/epmd.out" 2>&1 </dev/null &
  echo $! >"$DIR/epmd.pid"
  cookie=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  id=$(python3 -c 'import secrets; print(secrets.token_hex(4))')
  urls=()
  for ((n = 0; n < nodes; n++)); do
    node_dir=$DIR/n$n
    mkdir -p "$node_dir/home" "$node_dir/mnesia" "$node_dir/log"
    printf '%s' "$cookie" >"$node_dir/home/.erlang.cookie"
    chmod 400 "$node_dir/home/.erlang.cookie"
    echo '[].' >"$node_dir/enabled_plugins"
    amqp_port=${ports[1 + 2 * n]}
    echo "listeners.tcp.default = 127.0.0.1:$amqp_port" >"$node_dir/rabbitmq.conf"
    cat >"$node_dir/env" <<EOF
NODE_HOME=$node_dir/home
EPMD_PORT=$epmd_port
RABBITMQ_NODENAME=lro${id}n$n@localhost
RABBITMQ_NODE_PORT=$amqp_port
RABBITMQ_DIST_PORT=${ports[2 + 2 * n]}
RABBITMQ_MNESIA_BASE=$node_dir/mnesia
RABBITMQ_LOG_BASE=$node_dir/log
RABBITMQ_ENABLED_PLUGINS_FILE=$node_dir/enabled_plugins
RABBITMQ_CONFIG_FILE=$node_dir/rabbitmq.conf
RABBITMQ_PID_FILE=$node_dir/rabbit.pid
EOF
    urls+=("amqp://guest:guest@127.0.0.1:$amqp_port/%2f")
  done
  for ((n = 0; n < nodes; n++)); do start_node "$n"; done
  for ((n = 0; n < nodes; n++)); do await_node "$n"; done
  first=$(source "$DIR/n0/env" && echo "$RABBITMQ_NODENAME")
  for ((n = 1; n < nodes; n++)); do
    ctl "$n" stop_app >/dev/null
    # A join right after the first node booted can fail once; a second try succeeds.
    ctl "$n" join_cluster "$first" >/dev/null 2>&1 || ctl "$n" join_cluster "$first" >/dev/null
    ctl "$n" start_app >/dev/null
  done
  [[ $(running 0) == "$nodes" ]] || die "the cluster did not form: see $DIR"
  (IFS=,; echo "${urls[*]}") >"$DIR/urls"
  cat "$DIR/urls"
  ;;
kill)
  kill_node "${3:?node number}"
  ;;
up)
  n=${3:?node number}
  nodes=$(ls -d "$DIR"/n* | wc -l)
  start_node "$n"
  await_node "$n"
  for _ in $(seq 1 100); do
    [[ $(running "$n") == "$nodes" ]] && exit 0
    sleep 0.3
  done
  die "node $n did not rejoin the cluster"
  ;;
await-queue)
  # await-queue DIR QUEUE: until the quorum queue has a member online on every node (a quorum
  # queue declared just before a node is lost may not have elected its replicas yet).
  queue=${3:?queue name}
  nodes=$(ls -d "$DIR"/n* | wc -l)
  for _ in $(seq 1 200); do
    online=$(ctl 1 list_queues name online --formatter json 2>/dev/null | python3 -c '
import json, sys
q = [x for x in json.load(sys.stdin) if x.get("name") == sys.argv[1]]
print(len(q[0].get("online") or []) if q else 0)' "$queue" 2>/dev/null || echo 0)
    [[ $online == "$nodes" ]] && exit 0
    sleep 0.3
  done
  die "queue $queue has not got a member online on every node"
  ;;
stop)
  [[ -d $DIR ]] || exit 0
  for node_dir in "$DIR"/n*; do kill_node "${node_dir##*/n}"; done
  if [[ -f $DIR/epmd.pid ]]; then
    kill -s KILL "$(cat "$DIR/epmd.pid")" 2>/dev/null || true
  fi
  rm -rf "$DIR"
  ;;
*)
  die "unknown command $cmd"
  ;;
esac
