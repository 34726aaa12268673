#!/usr/bin/env bash
# Runs each fuzz target in fuzz/ for a bounded time, one at a time.
#
#   scripts/fuzz.sh [TARGET...]      # default: every target
#
# Environment:
#   FUZZ_SECS     seconds per target (default 60)
#   FUZZ_ENGINE   libfuzzer | stable (default: libfuzzer when `cargo fuzz` and
#                 a nightly toolchain are both present, else stable)
#   FUZZ_SEED     seed of the stable driver (default: fixed, so runs repeat)
#   CARGO_TARGET_DIR  honoured (default fuzz/target)
#
# libfuzzer: `cargo +nightly fuzz run` (coverage-guided, no sanitizer: the
# code under test is safe Rust; overflow checks and debug assertions on),
# corpus in fuzz/corpus/TARGET seeded with hand-made inputs.
# stable: src/bin/drive.rs, seeded random and mutated inputs, no coverage.
# Either way a crashing input is saved under fuzz/artifacts/TARGET/, and the
# script prints executions per target and exits non-zero if any target crashed.
set -uo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${FUZZ_SECS:-60}"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(frame_decoder handshake object_args)

engine="${FUZZ_ENGINE:-}"
if [ -z "$engine" ]; then
  if cargo fuzz --version >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1; then
    engine=libfuzzer
  else
    engine=stable
  fi
fi
echo "== fuzzing ${targets[*]} for ${secs}s each with the $engine engine"

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TARGET_DIR="$target_dir"
# The stable driver also writes libFuzzer's seed corpus.
cargo build --release --no-default-features --features drive --bin drive -q || exit 1
drive="$target_dir/release/drive"

summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t"
  if [ "$engine" = libfuzzer ]; then
    "$drive" seeds "$t" "corpus/$t"
    log="$(mktemp)"
    # -fork/-jobs are not used: one process, modest CPU.
    cargo +nightly fuzz run -s none "$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -max_len=4096 \
      -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1
    rc=$?
    execs="$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}')"
    grep -E '^(#[0-9]+.*DONE|==[0-9]+== ERROR|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" | tail -n 8
    if [ $rc -ne 0 ]; then
      failed=1
      echo "!! $t: libFuzzer exited $rc; log kept at $log"
      grep -E 'panicked at|Test unit written' "$log" | head -n 5
      summary+=("$t: ${execs:-?} execs, CRASH (see fuzz/artifacts/$t/)")
    else
      summary+=("$t: ${execs:-?} execs in ${secs}s, no crash")
      rm -f "$log"
    fi
  else
    out="$("$drive" "$t" "$secs" "${FUZZ_SEED:-12648430}")"
    rc=$?
    echo "$out"
    [ $rc -ne 0 ] && failed=1
    summary+=("$(echo "$out" | tail -n 1)")
  fi
done

echo "== summary ($engine)"
printf '  %s\n' "${summary[@]}"
exit $failed
