#!/usr/bin/env bash
# Builds cyborgfs optimized and runs the fleet's benchmark (bench/fleet_bench.py): one
# private PostgreSQL, 200 simulated hosts of 8 accelerators, 4 real daemons. Prints the
# figures beside their goals; writes bench/results/fleet.txt and bench/results/fleet.json.
# Usage: scripts/bench-fleet.sh [--rounds 7] [--pairs 200] [--changes 100] [--hosts 200]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target cyborgfs >/dev/null
mkdir -p bench/results
python3 bench/fleet_bench.py --bin build-bench/cyborgfs --out bench/results "$@" | tee bench/results/fleet.txt
