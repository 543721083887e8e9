#!/usr/bin/env bash
# Builds cyborgfs optimized and runs the benchmark: the mount, a tmpfs copy and the REST peer,
# side by side. Prints the table; writes bench/results/results.json and the two charts
# bench/results/workloads.svg and bench/results/scaling.svg (gnuplot).
# Usage: scripts/bench.sh [--sizes 10,1000,10000,100000] [--rounds 5] [--ops 2000]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target cyborgfs cyborgfs_bench >/dev/null
mkdir -p bench/results
build-bench/cyborgfs_bench --bin build-bench/cyborgfs --peer bench/rest_peer.py --out bench/results "$@" \
  | tee bench/results/table.txt

out=bench/results
largest=$(ls "$out"/workloads-*.dat | sed 's/.*workloads-\([0-9]*\).dat/\1/' | sort -n | tail -1)
gnuplot <<GNUPLOT
set terminal svg size 1100,600 dynamic font "sans,11"
set output "$out/workloads.svg"
set title "Per-operation time at $largest accelerators (median of rounds; lower is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set ylabel "microseconds per operation (log scale)"
set xtics rotate by -30 scale 0
set key top left
plot "$out/workloads-$largest.dat" using 2:xtic(1) title "cyborgfs mount", \
     "" using 3 title "tmpfs", \
     "" using (\$4 > 0 ? \$4 : 1/0) title "REST peer (GET)"

set output "$out/scaling.svg"
set title "Per-operation time on the mount against the number of accelerators"
set style data linespoints
set logscale x
set xlabel "accelerators"
set key outside right
plot for [w in "'stat spec' 'read spec' 'stat unknown uuid' 'ls -l accelerators/' 'attach/detach, 1 writer'"] \
  "$out/scaling.dat" using (stringcolumn(1) eq w ? \$2 : 1/0):3 title w
GNUPLOT
echo "charts: $out/workloads.svg $out/scaling.svg"
