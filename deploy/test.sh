#!/usr/bin/env bash
# THE test command: make sure Redis and RabbitMQ answer (the tests talk to real ones), then run
# every test in the workspace against them; then a second pass of the cancel cases against a
# private 3-node RabbitMQ cluster (deploy/rabbitmq-cluster.sh) with its quorum job queue; then a
# third pass of the integration suite's core modules against a private Redis Cluster of 3
# masters and 3 replicas (deploy/redis-cluster.sh).
# Extra arguments go to cargo test and skip the second pass, e.g. `deploy/test.sh -p lro-api` or
# `deploy/test.sh -- --nocapture`. cargo itself honours CARGO_TARGET_DIR when it is set.
set -euo pipefail

# Work from the repo root whatever the caller's directory.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# bash, not ./: works even where the executable bit was lost.
bash deploy/services.sh

if (($# > 0)); then
  # exec: cargo's output streams straight through and its exit code is ours.
  exec cargo test --workspace --locked "$@"
fi

cargo test --workspace --locked

echo
echo "==> second pass: the cancel cases on a 3-node RabbitMQ cluster"
cluster=$(mktemp -d -t lro-rabbit-cluster.XXXXXX)
redis_cluster=
trap 'bash deploy/rabbitmq-cluster.sh stop "$cluster"; [[ -z $redis_cluster ]] || bash deploy/redis-cluster.sh stop "$redis_cluster"' EXIT
LRO_TEST_AMQP_URL=$(bash deploy/rabbitmq-cluster.sh start "$cluster")
export LRO_TEST_AMQP_URL
cargo test -p lro-tests --test it --locked -- cancel::
bash deploy/rabbitmq-cluster.sh stop "$cluster"
unset LRO_TEST_AMQP_URL

echo
echo "==> third pass: the core modules on a Redis Cluster (3 masters + 3 replicas)"
redis_cluster=$(mktemp -d -t lro-redis-cluster.XXXXXX)
LRO_TEST_REDIS_URL=$(bash deploy/redis-cluster.sh start "$redis_cluster")
export LRO_TEST_REDIS_URL
cargo test -p lro-tests --test it --locked -- \
  list:: lifecycle:: cancel:: wait:: batch:: retries:: kinds:: faults:: grpc:: audit:: otlp:: trace::
