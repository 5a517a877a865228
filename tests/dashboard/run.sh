#!/usr/bin/env bash
# Runs dashboard.py (the dashboard in a real browser: Debian's Chromium driven by Playwright) in a
# virtualenv of its own, made on first use from PyPI with the pins in requirements.txt, under the
# cargo target dir so that it is never committed. Chromium comes from apt-get when
# /usr/bin/chromium is missing; Playwright's own browser download is never used. Arguments go to
# the script, e.g.
#   tests/dashboard/run.sh http://127.0.0.1:8080 [--token T] [--screenshot PATH]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

source "$here/../venv.sh"
venv_lock dashboard-venv
if [[ ! -x /usr/bin/chromium ]]; then
  # Another process may hold the dpkg lock for a while: wait for it rather than fail.
  apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q "$@" </dev/null >&2; }
  apt_get install chromium || { apt_get update && apt_get install chromium; }
fi

venv_make 'import playwright.sync_api'
venv_unlock
# Playwright must never fetch a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
exec "$py" "$here/dashboard.py" "$@"
