#!/usr/bin/env bash
# Runs every test (unit, fuzz corpora, mount tests: the daemon the tests
# start is the sanitized build) under a sanitizer. Any report fails the run.
# Usage: scripts/sanitize.sh [address|thread|all]   (default: all)
#   address: AddressSanitizer + UndefinedBehaviorSanitizer, in build-asan/
#   thread:  ThreadSanitizer, in build-tsan/
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}

bash scripts/install-deps.sh

run_suite() {  # build folder, sanitizer
  cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=Debug -DCYBORGFS_SANITIZE="$2" >/dev/null
  cmake --build "$1" -j"$(nproc)"
  (cd "$1" && ctest --output-on-failure --timeout 1800 -j"$(nproc)")
}

if [ "$which" = address ] || [ "$which" = all ]; then
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run_suite build-asan address
fi
if [ "$which" = thread ] || [ "$which" = all ]; then
  echo "== ThreadSanitizer"
  # exitcode: a race report makes the daemon exit non-zero, which its test reports
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:exitcode=66 run_suite build-tsan thread
fi
