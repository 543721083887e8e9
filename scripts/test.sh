#!/usr/bin/env bash
# Installs what cyborgfs needs, builds it, and runs every test under CTest:
# once in a normal build, once built with AddressSanitizer + UBSan.
# Usage: scripts/test.sh [--fast]   (--fast: skip the sanitizer build)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

run_suite() {  # build folder, extra cmake arguments...
  local dir=$1
  shift
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
  (cd "$dir" && ctest --output-on-failure --timeout 900 -j"$(nproc)")
}

run_suite build
if [ "${1:-}" != "--fast" ]; then
  echo "== again with AddressSanitizer and UndefinedBehaviorSanitizer"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    run_suite build-sanitize -DCMAKE_BUILD_TYPE=Debug -DCYBORGFS_SANITIZE=ON
fi
