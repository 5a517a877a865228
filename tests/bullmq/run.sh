#!/usr/bin/env bash
# Runs bench_bullmq.mjs with BullMQ installed from npm (the exact versions of package-lock.json)
# in an environment of its own under the cargo target dir, so that it is never committed; the
# install is redone when the lock file changes. Arguments go to the script.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
env="${CARGO_TARGET_DIR:-$here/../../target}/bullmq-env"
mkdir -p "$env"
if [[ ! -d "$env/node_modules/bullmq" ]] || ! cmp -s "$here/package-lock.json" "$env/package-lock.json"; then
  cp "$here/package.json" "$here/package-lock.json" "$env/"
  npm ci --prefix "$env" --no-audit --no-fund --loglevel=error >&2
fi
# The scripts run from the environment, where Node resolves `bullmq` in node_modules.
cp "$here"/*.mjs "$env/"
exec node "$env/bench_bullmq.mjs" "$@"
