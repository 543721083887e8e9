#!/usr/bin/env python3
"""Hotplug latency (issue 16): a synthetic PCI uevent to the rescan it makes, side by side
with the periodic rescan alone.

One real daemon with the pci driver on a test sysfs tree (tests/sysfs/fake_sysfs.py). Each
try unplugs (or plugs back) a device of the tree, writes `change` to the uevent file of a
real PCI device of this machine (the kernel sends the event), and times until the device's
`status` file says offline (or available): p50 and p99 over --tries (goal p50 <= 100 ms).
The same without uevents (the netlink socket refused, tests/tools/no_netlink.cc) waits for
the periodic rescan (--rescan-interval 1 here; 60 s by default).

Usage (as root): scripts/bench-py.sh uevents [--tries 20]
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("--bin", required=True)
parser.add_argument("--shim", help="no_netlink.so, for the run without uevents (default: beside --bin)")
parser.add_argument("--out", default="bench/results")
parser.add_argument("--tries", type=int, default=20)
args = parser.parse_args()
args.shim = args.shim or os.path.join(os.path.dirname(os.path.abspath(args.bin)), "no_netlink.so")

os.environ["CYBORGFS_BIN"] = os.path.abspath(args.bin)
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "mount"))
sys.path.insert(0, os.path.join(here, "..", "tests", "sysfs"))
from harness import Mount  # noqa: E402
import fake_sysfs  # noqa: E402
from fleet_sim import pct  # noqa: E402

ADDRESS = "0000:86:00.0"  # the tree's PAC FPGA


def real_device():
    for d in sorted(os.listdir("/sys/bus/pci/devices")):
        if os.access(os.path.join("/sys/bus/pci/devices", d, "uevent"), os.W_OK):
            return d
    sys.exit("no PCI device with a writable uevent file: run as root on a machine with PCI")


def status_of(m, uuid):
    with open(m.path("accelerators", uuid, "status")) as f:
        return f.read().strip()


def measure(env, rescan_interval, tries, real):
    work = tempfile.mkdtemp(prefix="cyborgfs-uevent-bench-")
    tree = fake_sysfs.build(os.path.join(work, "sys"))
    m = Mount(work, "--drivers", "pci", "--sysfs-root", tree, "--rescan-interval", str(rescan_interval),
              fake_devices=0, env=env)
    try:
        uuid = os.path.basename(os.readlink(m.path("by-name", "fpga-" + ADDRESS)))
        times = []
        for k in range(tries):
            plugged = k % 2 == 1
            (fake_sysfs.restore_device if plugged else fake_sysfs.remove_device)(tree, ADDRESS)
            want = "available" if plugged else "offline"
            start = time.monotonic()
            with open(os.path.join("/sys/bus/pci/devices", real, "uevent"), "w") as f:
                f.write("change")
            while status_of(m, uuid) != want:
                if time.monotonic() - start > 10:
                    raise SystemExit("no rescan within 10 s")
                time.sleep(0.0005)
            times.append((time.monotonic() - start) * 1000)
            time.sleep(0.05)  # the next try's event is not part of this one's burst
        return times
    finally:
        m.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    real = real_device()
    with_uevents = measure({}, 60, args.tries, real)
    without = measure({"LD_PRELOAD": os.path.abspath(args.shim)}, 1, max(4, args.tries // 4), real)
    p50, p99 = pct(with_uevents, 0.5), pct(with_uevents, 0.99)
    p50_without = pct(without, 0.5)
    lines = [
        "uevent benchmark: the pci driver on a test tree, a synthetic uevent on %s; %d CPUs" % (real, os.cpu_count()),
        "  uevent to rescan (a device unplugged or back, seen in status), p50 of %-3d %8.1f ms   <= 100 ms"
        % (len(with_uevents), p50),
        "    the same, p99                                                %8.1f ms" % p99,
        "  without uevents (--rescan-interval 1), p50 of %-3d                %8.1f ms   (the periodic rescan)"
        % (len(without), p50_without),
        "    ratio without / with                                        %8.1fx" % (p50_without / p50),
        "goals: uevent_p50 %s" % ("met" if p50 <= 100 else "MISSED"),
    ]
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "uevents.json"), "w") as f:
        json.dump({"with_uevents_ms": with_uevents, "without_ms": without, "p50_ms": p50, "p99_ms": p99,
                   "p50_without_ms": p50_without}, f, indent=1)


main()
