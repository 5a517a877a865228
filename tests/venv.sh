# Sourced by the tests' scripts that need Python tools: one virtualenv per script folder, made on
# first use from PyPI with the pins in that folder's requirements.txt, under the cargo target dir
# (never committed), and made again when the pins change or an import fails.
#
#   source "$here/../venv.sh"
#   venv_lock NAME            # sets $venv and $py; takes the lock (parallel tests: one makes it)
#   venv_make 'import x, y'   # [extra pip arguments...]
#   venv_unlock               # made: others may go on

venv_lock() {
  venv="${CARGO_TARGET_DIR:-$here/../../target}/$1"
  py="$venv/bin/python"
  mkdir -p "$(dirname "$venv")"
  exec 9>"$venv.lock"
  flock 9
}

venv_make() {
  local check="$1"
  shift
  if [[ ! -x "$py" ]] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt" \
      || ! "$py" -c "$check" 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" \
      -r "$here/requirements.txt" </dev/null >&2
    "$py" -c "$check"
    cp "$here/requirements.txt" "$venv/requirements.txt"
  fi
}

venv_unlock() {
  exec 9>&-
}
