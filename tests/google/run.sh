#!/usr/bin/env bash
# Runs conformance.py (or, with `--script with_credentials.py`, that script: the same clients authenticating) (lro driven by Google's own Python client libraries, over REST and gRPC) in a
# virtualenv of its own, made on first use from PyPI with the pins in requirements.txt, under the
# cargo target dir so that it is never committed. The project's lro/v1 protos are compiled for
# Python with the protoc bundled in grpcio-tools; the google/* protos come from
# googleapis-common-protos. Arguments go to the script, e.g.
#   tests/google/run.sh --http http://127.0.0.1:8080 --grpc 127.0.0.1:8081
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
protos="$(cd "$here/../../proto" && pwd)"
source "$here/../venv.sh"
venv_lock google-venv
venv_make 'import google.api_core.operations_v1, google.auth, google.longrunning.operations_pb2_grpc, google.rpc.error_details_pb2, grpc, grpc_status, grpc_tools.protoc, requests'

# Python for the project's own protos, made again whenever they change.
files=(lro/v1/operation_metadata.proto lro/v1/jobs.proto lro/v1/error.proto)
out="$venv/lro-pb"
sum="$(cd "$protos" && cat "${files[@]}" | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$out/.sum" 2>/dev/null)" != "$sum" ]]; then
  rm -rf "$out" && mkdir -p "$out"
  (cd "$protos" && "$py" -m grpc_tools.protoc -I . --python_out="$out" --grpc_python_out="$out" "${files[@]}")
  echo "$sum" >"$out/.sum"
fi
venv_unlock
export PYTHONPATH="$out${PYTHONPATH:+:$PYTHONPATH}"
# `--script with_credentials.py` runs another script of this folder with the same environment.
script=conformance.py
if [[ "${1:-}" == --script ]]; then
  script="$2"
  shift 2
fi
exec "$py" "$here/$script" "$@"
