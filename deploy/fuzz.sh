#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after another, each for a bounded time, and fails if
# any of them found a crash (printing where libFuzzer wrote the input). Not part of CI.
#
#   deploy/fuzz.sh                 every target, 60 s each
#   FUZZ_SECONDS=300 deploy/fuzz.sh route filter
#
# FUZZ_SANITIZER (default none) is passed to `cargo fuzz -s`: the workspace forbids unsafe code,
# so the bugs sought are panics and wrong answers, and ASan would double the build and slow the
# runs; use FUZZ_SANITIZER=address to look for memory errors in dependencies.
# The corpus grows under fuzz/corpus/<target> (not committed); fuzz/seeds/<target> is read too.
set -euo pipefail

# Work from the repo root whatever the caller's directory.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Nothing here may wait for a keyboard.
exec </dev/null

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"

# cargo-fuzz needs a nightly toolchain; the machine's rustup has one.
if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

if (($# > 0)); then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build -s "$sanitizer"

failed=()
for target in "${targets[@]}"; do
  printf '\n==> %s (%s s)\n' "$target" "$seconds"
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  dirs=("$corpus")
  [[ -d "fuzz/seeds/$target" ]] && dirs+=("fuzz/seeds/$target")
  log="fuzz/target/$target.log"
  # libFuzzer writes new inputs to the first directory only, so the seeds stay as they are.
  # -timeout: one input taking 10 s is a hang, and a finding.
  if ! cargo +nightly fuzz run -s "$sanitizer" "$target" "${dirs[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 2>&1 | tee "$log"; then
    failed+=("$target")
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    printf 'fuzz: %s failed; input: %s\n' "$target" "${artifact:-none written (see $log)}" >&2
  fi
done

if ((${#failed[@]} > 0)); then
  printf '\nfuzz: crashes in: %s (inputs under fuzz/artifacts/<target>/)\n' "${failed[*]}" >&2
  exit 1
fi
printf '\nfuzz: no crashes in %s\n' "${targets[*]}"
