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
source "$here/../venv.sh"
venv_lock deploy-venv
venv_make 'import kubernetes_validate, yaml' --no-deps
venv_unlock
exec "$py" "$here/check.py" --repo "$here/../.." "$@"
