#!/usr/bin/env bash
# Runs bench_celery.py in a virtualenv of its own (made on first use, from PyPI), under the cargo
# target dir so that it is never committed. Arguments go to the script.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${CARGO_TARGET_DIR:-$here/../../target}/celery-venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import celery, redis' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet "celery[redis]==5.4.0" >&2
fi
exec "$venv/bin/python" "$here/bench_celery.py" "$@"
