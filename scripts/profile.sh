#!/usr/bin/env bash
# Profiles the daemon on the write path (issue 5: where an attach's time goes) with perf.
# Mounts an optimized cyborgfs on a temp folder (--drivers none), makes one accelerator,
# attaches and detaches it in a loop (one open(O_TRUNC)+write+close per op, as a shell does)
# while `perf record` samples the daemon, then writes the report to
# bench/results/profile-write.txt: time per dso, and the daemon's functions with what they
# call. Usage: scripts/profile.sh [seconds]   (as root; default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3}

bash scripts/install-deps.sh
dpkg-query -W -f='${Status}' linux-perf 2>/dev/null | grep -q 'install ok installed' ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
# Optimized, with frame pointers so perf can tell which function called which.
cmake -S . -B build-profile -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS=-fno-omit-frame-pointer >/dev/null
cmake --build build-profile -j"$(nproc)" --target cyborgfs >/dev/null

work=$(mktemp -d)
daemon=""
writer=""
cleanup() {
  set +e
  if [ -n "$writer" ]; then
    kill "$writer" 2>/dev/null
    wait "$writer" 2>/dev/null
  fi
  if [ -n "$daemon" ]; then
    fusermount3 -u "$work/mnt" 2>/dev/null || kill "$daemon" 2>/dev/null
    wait "$daemon" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/mnt"
build-profile/cyborgfs -f --drivers none --log-level error --db "$work/db" --api-socket none "$work/mnt" &
daemon=$!
for _ in $(seq 100); do mountpoint -q "$work/mnt" && break; sleep 0.05; done
mountpoint -q "$work/mnt" || { echo "cyborgfs did not mount" >&2; exit 1; }
uuid=8e45a2ea-5364-4b0d-a252-bf8becaa606e
mkdir "$work/mnt/accelerators/$uuid"

python3 - "$work/mnt/accelerators/$uuid/attach" <<'PYTHON' &
import os, sys
path, vm = sys.argv[1], b"vm 11111111-2222-4333-8444-555555555555\n"
i = 0
while True:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"\n" if i % 2 else vm)
    os.close(fd)
    i += 1
PYTHON
writer=$!
sleep 0.5
perf record -q -F 2999 -g -p "$daemon" -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null
out=bench/results/profile-write.txt
mkdir -p bench/results
{
  echo "# perf profile of the daemon while one writer attaches and detaches (scripts/profile.sh)"
  echo "# $(uname -sr), $(nproc) CPUs; samples of the daemon's threads"
  echo
  echo "## time per library"
  perf report -i "$work/perf.data" --no-children --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
  echo
  echo "## the daemon's functions, with what they call (inclusive)"
  perf report -i "$work/perf.data" --children --sort sym -g none 2>/dev/null | grep -v '^#' |
    grep -E 'cyborgfs::|sqlite3_step|fuse_reply|__libc_pwrite|fcntl64|fdatasync|writev|\[k\] fuse_dev_(read|write)' |
    head -30
} >"$out"
echo "profile: $out"
