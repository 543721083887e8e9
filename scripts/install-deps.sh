#!/usr/bin/env bash
# Installs everything cyborgfs needs to build, run and test, from Debian's archive.
# Safe to run again; does nothing when all packages are present.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  fuse3 libfuse3-dev
  libsqlite3-dev sqlite3
  nlohmann-json3-dev libspdlog-dev libfmt-dev
  libgtest-dev googletest
  libcli11-dev uuid-dev libpci-dev pci.ids libsystemd-dev
  # the REST API (issue 13), and curl its tests drive it with
  libcpp-httplib-dev curl
  # the fleet (issue 14): libpq, and a PostgreSQL server the tests start privately
  libpq-dev postgresql-15
  # GET /metrics in the Prometheus text format (issue 16)
  prometheus-cpp-dev
  # a host whose clock is far off, in fleet_test (LD_PRELOAD)
  faketime
  # the man page test renders cyborgfs(8); setpriv runs tests as another user
  groff-base util-linux
  # scripts/fuzz.sh: libFuzzer with clang
  clang-14 libclang-rt-14-dev
  python3 coreutils procps
  # the tools the tests drive against the mount (issue 3)
  bash dash sed vim ed rsync file e2fsprogs ansible-core puppet
  # the benchmark's charts (issue 5)
  gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
