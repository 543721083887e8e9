#!/usr/bin/env bash
# Fuzzes every parser of user input with libFuzzer (clang, ASan+UBSan).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   targets: spec create attach name writes sysfs config (default: all); 60 s each.
# New interesting inputs collect in build-fuzz/corpus/<target>/; a crash stops
# the run and is left in build-fuzz/crashes/. A bug found becomes a corpus
# file: copy the crash into tests/fuzz/corpus/<target>/ and fix it; every
# build then replays it (CTest fuzz_corpus_<target>).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(spec create attach name writes sysfs config)

bash scripts/install-deps.sh
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCYBORGFS_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]/#/fuzz_}"
mkdir -p build-fuzz/crashes
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "== fuzz_$t for $seconds s"
  # -close_fd_mask=2: the config target's parse errors would flood stderr
  "build-fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -close_fd_mask=2 \
    -artifact_prefix="build-fuzz/crashes/$t-" -print_final_stats=1 \
    "build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" 2>&1 | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==ERROR|SUMMARY)" || {
    echo "fuzz_$t found a failing input: build-fuzz/crashes/$t-*" >&2
    exit 1
  }
done
echo "no failing input found in ${#targets[@]} target(s), $seconds s each"
