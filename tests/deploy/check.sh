#!/usr/bin/env bash
# Validates what a platform team deploys — deploy/Dockerfile, .dockerignore, deploy/compose.yaml
# and deploy/k8s/ — without running any of it (no container engine, no cluster): check.py parses
# them, validates every built-in Kubernetes kind strictly with kubernetes-validate, checks KEDA's
# kinds structurally, and checks them all against the binaries' own `--help` (variables, ports).
# Its virtualenv is made on first use from PyPI with the pins in requirements.txt, under the cargo
# target dir so that it is never committed.
#   tests/deploy/check.sh --api-bin target/debug/lro-api --worker-bin target/debug/lro-worker
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${CARGO_TARGET_DIR:-$here/../../target}/deploy-venv"
py="$venv/bin/python"
# Tests run in parallel and may both find the virtualenv missing: one makes it, the other waits.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
check='import kubernetes_validate, yaml'
if [[ ! -x "$py" ]] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt" \
    || ! "$py" -c "$check" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    -r "$here/requirements.txt" </dev/null >&2
  "$py" -c "$check"
  cp "$here/requirements.txt" "$venv/requirements.txt"
fi
exec 9>&- # made: others may go on
exec "$py" "$here/check.py" --repo "$here/../.." "$@"
