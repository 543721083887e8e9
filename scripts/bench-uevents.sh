#!/usr/bin/env bash
# Builds cyborgfs optimized and runs the hotplug benchmark (bench/uevent_bench.py): a
# synthetic PCI uevent to the rescan it makes, p50 and p99, beside the periodic rescan alone.
# Prints the figures beside their goal; writes bench/results/uevents.txt and .json.
# Usage: scripts/bench-uevents.sh [--tries 20]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target cyborgfs no_netlink >/dev/null
mkdir -p bench/results
python3 bench/uevent_bench.py --bin build-bench/cyborgfs --shim build-bench/no_netlink.so --out bench/results "$@" |
  tee bench/results/uevents.txt
