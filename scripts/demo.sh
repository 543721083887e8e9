#!/usr/bin/env bash
# Installs what cyborgfs needs, builds it, and mounts a demo to explore:
# the fake driver with 4 accelerators, the database in ./demo/cyborgfs.db,
# the log (with its audit trail) in ./demo/cyborgfs.log, the tree on
# ./demo/mnt, the REST API on ./demo/api.sock. Stop it with: fusermount3 -u demo/mnt
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target cyborgfs

mkdir -p demo/mnt
if mountpoint -q demo/mnt; then
  echo "cyborgfs is already mounted on $PWD/demo/mnt"
else
  ./build/cyborgfs --db demo/cyborgfs.db --log-file demo/cyborgfs.log --drivers fake --fake-devices 4 \
    --api-socket demo/api.sock demo/mnt
fi
echo
echo "cyborgfs is mounted on $PWD/demo/mnt:"
ls -l demo/mnt/by-name
cat <<HELP

Try:
  cd demo/mnt
  cat accelerators/*/status
  echo '{"num": 1, "device_type": "GPU"}' > by-name/gpu-0000:f0:00.0/spec
  echo 'vm 8e45a2ea-5364-4b0d-a252-bf8becaa606e' > by-name/gpu-0000:f0:00.0/attach
  cat by-name/gpu-0000:f0:00.0/attach_handle
The REST API (docs/api.md), on the same state:
  curl -s --unix-socket $PWD/demo/api.sock http://localhost/accelerators
  curl -s --unix-socket $PWD/demo/api.sock http://localhost/accelerators/by-name/gpu-0000:f0:00.0
The log, with the audit trail of every change: $PWD/demo/cyborgfs.log
  grep ' audit ' demo/cyborgfs.log
Stop it with: fusermount3 -u $PWD/demo/mnt
HELP
