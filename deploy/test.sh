#!/usr/bin/env bash
# THE test command: make sure Redis and RabbitMQ answer (the tests talk to real
# ones), then run every test in the workspace. Extra arguments go to cargo test,
# e.g. `deploy/test.sh -p lro-api` or `deploy/test.sh -- --nocapture`.
# cargo itself honours CARGO_TARGET_DIR when it is set.
set -euo pipefail

# Work from the repo root whatever the caller's directory.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# bash, not ./: works even where the executable bit was lost.
bash deploy/services.sh

# exec: cargo's output streams straight through and its exit code is ours.
exec cargo test --workspace --locked "$@"
