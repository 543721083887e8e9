#!/usr/bin/env bash
# Installs what cyborgfs needs, builds it, and runs every test under CTest:
# once in a normal build, once built with AddressSanitizer + UBSan
# (scripts/sanitize.sh; it also runs ThreadSanitizer).
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
  bash scripts/sanitize.sh address  # scripts/sanitize.sh thread: ThreadSanitizer
fi
