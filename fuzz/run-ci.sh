#!/usr/bin/env bash
# Coverage-guided fuzzing for CI: builds every cargo-fuzz target and runs each one from its
# committed seeds (seeds/<target>/) for FUZZ_SECONDS (default 20) seconds, one at a time with a
# single job. Fails on the first crash, panic, timeout or out-of-memory; libFuzzer writes the input
# to fuzz/artifacts/<target>/ and this script prints how to reproduce it.
#
# cargo-fuzz passes -Z flags to rustc, which a stable toolchain accepts with RUSTC_BOOTSTRAP=1 (no
# nightly needed). Targets are built without a sanitizer: the code under test is safe Rust
# (#![forbid(unsafe_code)]), and libFuzzer still catches panics (every property is an assertion),
# arithmetic overflow (debug assertions are on), inputs slower than 10 s and memory over 2 GiB.
# Everything stays under fuzz/ (target/, corpus/, artifacts/ are gitignored), so the workspace
# build and its target/ are not blocked.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

seconds="${FUZZ_SECONDS:-20}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cargo fuzz --version

start=$SECONDS
cargo fuzz build -s none
echo "fuzz: built every target in $((SECONDS - start)) s"

failed=()
for target in $(cargo fuzz list); do
  # A scratch corpus per run: new inputs go there, the committed seeds are only read.
  corpus="corpus/ci-$target"
  rm -rf "$corpus"
  mkdir -p "$corpus" "artifacts/$target"
  echo "fuzz: $target for ${seconds} s"
  if cargo fuzz run -s none "$target" "$corpus" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"artifacts/$target/ci.log" 2>&1; then
    grep -aE '^Done [0-9]+ runs' "artifacts/$target/ci.log" || true
  else
    failed+=("$target")
    tail -n 60 "artifacts/$target/ci.log"
    echo "fuzz: $target FAILED; reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run -s none $target fuzz/artifacts/$target/<crash-file> (from fuzz/)" >&2
  fi
  rm -rf "$corpus"
done

targets=$(cargo fuzz list | wc -l)
echo "fuzz: $((targets - ${#failed[@]})) passed, ${#failed[@]} failed"
if ((${#failed[@]})); then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: every target ran ${seconds} s without a crash ($((SECONDS - start)) s in all)"
