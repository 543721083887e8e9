#!/usr/bin/env python3
"""Watchers' wake (issue 16): a change made by another process to the moment a poll(2)
watcher has read the new value, side by side with a script that re-reads the file every
100 ms (what `watch -n 0.1 cat status` does, without poll).

One real daemon (fake driver). --watchers processes watch a GPU's `status` as the README's
"Watching a file" says (select.poll, POLLPRI, seek(0), read); as many re-readers read it
again every --interval. The bench process attaches and detaches the GPU through `attach`
(one write(2), as `echo`), --changes times, a random pause of up to 100 ms between changes,
and times from just before the write(2) to each watcher's read of the new value
(CLOCK_MONOTONIC, the same in every process): p50 and p99 over every (change, watcher)
(goal p50 <= 100 ms). Also the daemon's poll requests per change, from its stats file.

Usage (as root): scripts/bench-py.sh watch [--watchers 10] [--changes 100]
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("--bin", required=True)
parser.add_argument("--out", default="bench/results")
parser.add_argument("--watchers", type=int, default=10)
parser.add_argument("--changes", type=int, default=100)
parser.add_argument("--interval", type=float, default=0.1, help="the re-readers' period, seconds")
args = parser.parse_args()

os.environ["CYBORGFS_BIN"] = os.path.abspath(args.bin)
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "mount"))
from harness import Mount, echo_into  # noqa: E402
from fleet_sim import pct  # noqa: E402

# Prints "ready", then "<monotonic seconds> <value>" once it has read each new value.
POLLER = r"""
import select, sys, time
f = open(sys.argv[1])
f.read()
p = select.poll()
p.register(f, select.POLLPRI | select.POLLERR)
p.poll(0)
print("ready", flush=True)
while p.poll(30000):
    f.seek(0)
    value = f.read().strip()
    print("%.6f %s" % (time.monotonic(), value), flush=True)
"""
REREADER = r"""
import sys, time
path, interval = sys.argv[1], float(sys.argv[2])
with open(path) as f:
    last = f.read().strip()
print("ready", flush=True)
while True:
    time.sleep(interval)
    with open(path) as f:
        value = f.read().strip()
    if value != last:
        print("%.6f %s" % (time.monotonic(), value), flush=True)
        last = value
"""


class Observer:
    """A watching process and what it saw: [(time, value)]."""

    def __init__(self, script, *argv):
        self.proc = subprocess.Popen([sys.executable, "-c", script, *argv], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.seen = []
        self.thread = threading.Thread(target=self.collect, daemon=True)
        self.thread.start()

    def collect(self):
        for line in self.proc.stdout:
            t, value = line.split()
            self.seen.append((float(t), value))

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def stats(m):
    with open(m.path("stats")) as f:
        return json.load(f)


def gpu_of(m):
    name = sorted(n for n in os.listdir(m.path("by-name")) if n.startswith("gpu-"))[0]
    return os.path.basename(os.readlink(m.path("by-name", name)))


def measure(m, uuid, observers):
    """Times from each change's write(2) to each observer's read of it (ms); poll requests."""
    attach = m.path("accelerators", uuid, "attach")
    polls = stats(m)["poll"]
    latencies = []
    for k in range(args.changes):
        time.sleep(random.uniform(0, 0.1))
        want = "attached" if k % 2 == 0 else "available"
        start = time.monotonic()
        echo_into(attach, "vm 11111111-2222-4333-8444-555555555555\n" if k % 2 == 0 else "\n")
        deadline = start + 10
        while any(len(o.seen) <= k for o in observers):
            if time.monotonic() > deadline:
                raise SystemExit("change %d: not every observer saw it within 10 s" % k)
            time.sleep(0.001)
        for o in observers:
            t, value = o.seen[k]
            if value != want:
                raise SystemExit("change %d: an observer read %r, not %r" % (k, value, want))
            latencies.append((t - start) * 1000)
    return latencies, (stats(m)["poll"] - polls) / args.changes


def main():
    random.seed(16)
    work = tempfile.mkdtemp(prefix="cyborgfs-watch-bench-")
    m = Mount(work, fake_devices=4)
    try:
        uuid = gpu_of(m)
        status = m.path("accelerators", uuid, "status")
        results = {}
        for kind, make in (("poll", lambda: Observer(POLLER, status)),
                           ("reread", lambda: Observer(REREADER, status, str(args.interval)))):
            observers = [make() for _ in range(args.watchers)]
            try:
                results[kind] = measure(m, uuid, observers)
            finally:
                for o in observers:
                    o.stop()
    finally:
        m.stop()
        shutil.rmtree(work, ignore_errors=True)
    (polled, polls), (reread, _) = results["poll"], results["reread"]
    p50, p99, p50_reread = pct(polled, 0.5), pct(polled, 0.99), pct(reread, 0.5)
    lines = [
        "watch benchmark: %d watchers of one status file, %d changes by another process; %d CPUs"
        % (args.watchers, args.changes, os.cpu_count()),
        "  change to a poll(2) watcher's read of it, p50 of %-5d %8.2f ms   <= 100 ms" % (len(polled), p50),
        "    the same, p99                                      %8.2f ms" % p99,
        "    poll requests to the daemon per change, all watchers %6.1f" % polls,
        "  re-reading every %.0f ms instead, p50 of %-5d         %8.2f ms"
        % (args.interval * 1000, len(reread), p50_reread),
        "    ratio re-reading / poll(2)                         %8.1fx" % (p50_reread / p50),
        "goals: wake_p50 %s" % ("met" if p50 <= 100 else "MISSED"),
    ]
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "watch.json"), "w") as f:
        json.dump({"poll_ms": polled, "reread_ms": reread, "p50_ms": p50, "p99_ms": p99,
                   "p50_reread_ms": p50_reread, "polls_per_change": polls}, f, indent=1)


main()
