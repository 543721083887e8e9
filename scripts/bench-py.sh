#!/usr/bin/env bash
# Builds cyborgfs optimized and runs one of the Python benchmarks, bench/NAME_bench.py:
#   fleet     one private PostgreSQL, 200 simulated hosts of 8 accelerators, 4 real daemons
#   requests  accelerator requests: one private PostgreSQL, 3 real daemons, 200 simulated hosts
#   uevents   a synthetic PCI uevent to the rescan it makes, beside the periodic rescan alone
#   watch     a change to its poll(2) watchers' read of it, beside re-reading every 100 ms
# Each prints its figures beside their goals; writes bench/results/NAME.txt and NAME.json.
# Usage: scripts/bench-py.sh NAME [the benchmark's options, see its --help]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."

name=${1:?usage: scripts/bench-py.sh fleet|requests|uevents|watch [options]}
shift
[ -f "bench/${name}_bench.py" ] || { echo "no benchmark bench/${name}_bench.py" >&2; exit 2; }
bash scripts/install-deps.sh
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target cyborgfs no_netlink >/dev/null
mkdir -p bench/results
python3 "bench/${name}_bench.py" --bin build-bench/cyborgfs --out bench/results "$@" | tee "bench/results/${name}.txt"
