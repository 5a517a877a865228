#!/usr/bin/env bash
# Runs Schemathesis against a running lro-api: it loads the api's own document
# (`GET /v1/openapi.json`), checks that it is valid OpenAPI 3.1, then sends generated requests —
# schema-valid and schema-invalid ones, then chains of calls along the document's links — and
# checks every answer (no 5xx; status code, content type, headers and body as documented; invalid
# input refused, valid input accepted; a deleted operation stays gone). The virtualenv is made on
# first use from PyPI with the pins in requirements.txt, under the cargo target dir so that it is
# never committed.
#
#   tests/schemathesis/run.sh http://127.0.0.1:8080 [--header "Authorization: Bearer …"]... [st run options]
#
# Without an `Authorization` or `x-goog-api-key` header the api is taken to run with
# authentication off, and the `ignored_auth` check (documented credentials must be enforced) is
# skipped. Options after the URL go to `st run` as they are (e.g. `--exclude-path /v1/kinds`).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../venv.sh"
venv_lock schemathesis-venv
venv_make 'import schemathesis, openapi_spec_validator'
venv_unlock

base="${1:?usage: run.sh BASE_URL [--header 'Name: value']... [st run options]}"
shift
base="${base%/}"
args=()
headers=()
auth=off
while (($#)); do
  case "$1" in
    --header | -H)
      args+=(--header "$2")
      headers+=("$2")
      shopt -s nocasematch
      [[ "$2" =~ ^(authorization|x-goog-api-key): ]] && auth=on
      shopt -u nocasematch
      shift 2
      ;;
    *) args+=("$1") && shift ;;
  esac
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The document the api serves must be valid OpenAPI 3.1 (Schemathesis checks too, more leniently).
"$py" - "$base/v1/openapi.json" <<'PY'
import json, sys, urllib.request
from openapi_spec_validator import validate
from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator
doc = json.load(urllib.request.urlopen(sys.argv[1]))
assert doc.get("openapi", "").startswith("3.1."), f"not OpenAPI 3.1: {doc.get('openapi')!r}"
validate(doc, cls=OpenAPIV31SpecValidator)
print(f"openapi: {sys.argv[1]} is valid OpenAPI {doc['openapi']} ({len(doc['paths'])} paths)")
PY

# `unsupported_method` expects 405 with `Allow` for a method a path does not document; lro answers
# 404 NOT_FOUND (NO_SUCH_METHOD) instead, as Google's front ends do — a decision of the contract's
# error section and ARCHITECTURE.md ("wrong method or unknown path is 404").
exclude=unsupported_method
if [[ $auth == off ]]; then
  # Authentication is off (no credential settings): the api is open on loopback by design, so
  # answering without credentials is right.
  exclude+=,ignored_auth
fi
echo "schemathesis: $("$py" -c "import importlib.metadata as m; print(m.version('schemathesis'))"), authentication $auth, checks all but $exclude"

config="$here/schemathesis.toml"
# Every check runs (Schemathesis's default; `--checks all` would override the per-operation
# settings of schemathesis.toml) but those excluded above. Bounded: a fixed seed (the same cases
# each run) and a few examples per operation. The api under test should cap `:wait` low
# (LRO_MAX_WAIT), or the generated waits add up.
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=hooks
status=0
# In a directory of its own: Schemathesis keeps state (`.schemathesis/`) in its working directory.
cd "$work"
"$venv/bin/st" --config-file "$config" --no-color run "$base/v1/openapi.json" \
  --exclude-checks "$exclude" \
  --max-examples 20 --seed 20261201 --workers 2 --request-timeout 15 \
  --generation-database none --report har --report-har-path "$work/run.har" \
  "${args[@]}" || status=$?
# Every request Schemathesis sent, from its HAR record.
"$py" - "$work/run.har" <<'PY' || true
import collections, json, sys
entries = json.load(open(sys.argv[1]))["log"]["entries"]
# Classes, but each 5xx by its own code (501 is the contract's answer to some cancels).
status = lambda s: str(s) if s >= 500 else f"{s // 100}xx"
codes = collections.Counter(status(e["response"]["status"]) for e in entries)
print(f"schemathesis: {len(entries)} requests, by status: {dict(sorted(codes.items()))}")
PY
exit "$status"
