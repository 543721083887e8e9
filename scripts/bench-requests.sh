#!/usr/bin/env bash
# Builds cyborgfs optimized and runs the accelerator requests' benchmark
# (bench/requests_bench.py): one private PostgreSQL, 3 real daemons, 200 simulated hosts.
# Prints the figures beside their goals; writes bench/results/requests.txt and .json.
# Usage: scripts/bench-requests.sh [--rounds 200] [--requesters 20] [--each 10]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target cyborgfs >/dev/null
mkdir -p bench/results
python3 bench/requests_bench.py --bin build-bench/cyborgfs --out bench/results "$@" | tee bench/results/requests.txt
