#!/usr/bin/env python3
"""The fleet's benchmark (issue 14): one real PostgreSQL, 200 simulated hosts of 8
accelerators each, and real daemons; prints each figure beside its goal.

The simulated hosts are written by a load generator speaking the publisher's protocol
directly (rows of fleet_hosts and fleet_accelerators, a revision per change, NOTIFY
cyborgfs_fleet), through psql; during the measurements it keeps changing them (a
status flip every 20 ms), so the readers catch up under churn. The real daemons:

  A, B, C  --fleet, 8 fake accelerators each (A changes, B and C watch);
  N        the same without --fleet, for the local attach with vs without.

Measured, side by side in one run:
  - attach+detach through the file on A (--fleet) and on N (without), in alternating
    rounds: the ratio of their p50s (goal: within 1.2x);
  - change to visible: an attach on A's mount until B's MOUNT/fleet/... file shows it,
    p50 and p99 (goals 200 ms, 1 s);
  - GET /fleet/accelerators?device_type=GPU&status=available on B's API socket over the
    1 624 accelerators, p50 (goal 10 ms);
  - a full resync of one host: A's publisher's "resync_ms" after its connection is
    ended by pg_terminate_backend (it reconnects and publishes everything), p50 (goal 50 ms);
  - RSS of B (a fleet view of 1 600 remote accelerators) and of N.

Usage (as root): scripts/bench-py.sh fleet [--rounds 7] [--pairs 200] [--changes 100]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("--bin", required=True)
parser.add_argument("--out", default="bench/results")
parser.add_argument("--hosts", type=int, default=200)
parser.add_argument("--per-host", type=int, default=8)
parser.add_argument("--rounds", type=int, default=7)
parser.add_argument("--pairs", type=int, default=200)
parser.add_argument("--changes", type=int, default=100)
parser.add_argument("--gets", type=int, default=200)
parser.add_argument("--resyncs", type=int, default=15)
args = parser.parse_args()

os.environ["CYBORGFS_BIN"] = os.path.abspath(args.bin)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "mount"))
import harness  # noqa: E402  (after CYBORGFS_BIN: the harness reads it)
from harness import Mount, PrivatePostgres, clear_mounts, echo_into, wait_for  # noqa: E402
from fleet_sim import (VM, Psql, UnixHTTP, children, churn, daemon_pid, get, pct, pin, rss_kib,  # noqa: E402
                       simulated_fleet)


def pair_times(m, uuid, pairs):
    """attach + detach through the file, `pairs` times: the pairs' times in microseconds."""
    path = m.path("accelerators", uuid, "attach")
    on, off = ("vm %s\n" % VM).encode(), b"\n"
    times = []
    for _ in range(pairs):
        t = time.perf_counter()
        for data in (on, off):
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
            os.write(fd, data)
            os.close(fd)
        times.append((time.perf_counter() - t) * 1e6)
    return times


def read(path):
    with open(path) as f:
        return f.read()


def main():
    work = tempfile.mkdtemp(prefix="cyborgfs-fleet-bench-")
    pg = PrivatePostgres()
    mounts, stop, psql = [], threading.Event(), None
    try:
        conninfo = pg.conninfo()

        def daemon(name, fleet):
            folder = os.path.join(work, name)
            os.mkdir(folder)
            extra = ["--fleet", conninfo] if fleet else []
            m = Mount(folder, *extra, host=name, fake_devices=8)
            mounts.append(m)
            return m

        a, b, c = (daemon(n, True) for n in ("host-a", "host-b", "host-c"))
        n = daemon("host-n", False)
        wait_for(lambda: len(pg.psql("SELECT 1 FROM fleet_inventory")) == 24, timeout=30, what="A, B, C published")
        gpu_a = next(u for u in os.listdir(a.path("accelerators"))
                     if read(a.path("accelerators", u, "device_type")) == "GPU\n")
        gpu_n = next(u for u in os.listdir(n.path("accelerators"))
                     if read(n.path("accelerators", u, "device_type")) == "GPU\n")
        conn = UnixHTTP(a.api_socket)
        template = json.loads(get(conn, "/accelerators/" + gpu_a))
        conn.close()
        with tempfile.NamedTemporaryFile("w", suffix=".sql", dir=work, delete=False) as f:
            f.write(simulated_fleet(template, args.hosts, args.per_host))
        os.chmod(work, 0o755)
        os.chmod(f.name, 0o644)
        pg.as_postgres(["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-h", pg.dir, "-p", str(pg.port),
                        "-d", "postgres", "-f", f.name])
        total = args.hosts * args.per_host + 24
        wait_for(lambda: len(os.listdir(b.path("fleet", "accelerators"))) == total, timeout=30,
                 what="the whole fleet in B's view")
        psql = Psql(pg)
        churner = threading.Thread(target=churn, args=(psql, args.hosts, args.per_host, stop), daemon=True)
        churner.start()

        # 1. A local attach with --fleet and without, in alternating rounds; in two
        # placements: everything sharing both CPUs, and "the host" (A, N and this client)
        # on CPU 0 with "the rest of the fleet" (PostgreSQL, B, C, the load) on CPU 1, as
        # when the center and the other hosts are other machines.
        def attach_rounds():
            w_all, wo_all, ratios = [], [], []
            for _ in range(args.rounds):
                w = pair_times(a, gpu_a, args.pairs)
                wo = pair_times(n, gpu_n, args.pairs)
                w_all += w
                wo_all += wo
                ratios.append(statistics.median(w) / statistics.median(wo))
            return w_all, wo_all, ratios

        with_fleet, without, ratios = attach_rounds()
        everyone = [daemon_pid(m) for m in (a, b, c, n)]
        center = [daemon_pid(b), daemon_pid(c), psql.proc.pid, pg.postmaster_pid()] + children(pg.postmaster_pid())
        split = os.cpu_count() >= 2
        if split:
            for pid in center:
                pin(pid, [1])
            for pid in (daemon_pid(a), daemon_pid(n), os.getpid()):
                pin(pid, [0])
            split_with, split_without, split_ratios = attach_rounds()
            for pid in everyone + center[2:] + children(pg.postmaster_pid()) + [os.getpid()]:
                pin(pid, range(os.cpu_count()))

        # 2. Change to visible on B, through B's mount.
        watched = b.path("fleet", "hosts", "host-a", "accelerators", gpu_a, "attach")
        latencies = []
        for i in range(args.changes):
            want = "vm %s\n" % VM if i % 2 == 0 else ""
            echo_into(a.path("accelerators", gpu_a, "attach"), want or "\n")
            t = time.perf_counter()
            while read(watched) != want:
                if time.perf_counter() - t > 10:
                    raise AssertionError("change %d not visible on B within 10 s" % i)
            latencies.append((time.perf_counter() - t) * 1e3)
        # ... and over C's API.
        api_latencies = []
        conn = UnixHTTP(c.api_socket)
        for i in range(args.changes // 2):
            want = "attached" if i % 2 == 0 else "available"
            echo_into(a.path("accelerators", gpu_a, "attach"), "vm %s\n" % VM if i % 2 == 0 else "\n")
            t = time.perf_counter()
            while json.loads(get(conn, "/fleet/accelerators/" + gpu_a))["status"] != want:
                if time.perf_counter() - t > 10:
                    raise AssertionError("change not visible over C's API within 10 s")
            api_latencies.append((time.perf_counter() - t) * 1e3)
        conn.close()

        # 3. GET /fleet/accelerators?device_type=GPU&status=available on B.
        conn = UnixHTTP(b.api_socket)
        gets, found = [], 0
        for _ in range(args.gets):
            t = time.perf_counter()
            body = get(conn, "/fleet/accelerators?device_type=GPU&status=available")
            gets.append((time.perf_counter() - t) * 1e3)
            found = len(json.loads(body)["accelerator"])
        conn.close()

        # 4. A full resync of host A: its connection ended, it reconnects and publishes everything.
        resyncs = []
        for _ in range(args.resyncs):
            before = json.loads(read(a.path("drivers")))["fleet"]["connected_since"]
            pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                    "'cyborgfs host-a'")
            wait_for(lambda: json.loads(read(a.path("drivers")))["fleet"]["state"] == "ok" and
                     json.loads(read(a.path("drivers")))["fleet"]["connected_since"] != before or
                     json.loads(read(a.path("drivers")))["fleet"]["connected_since"] is None, timeout=30,
                     what="A's publisher reconnected")
            wait_for(lambda: json.loads(read(a.path("drivers")))["fleet"]["state"] == "ok", timeout=30,
                     what="A's publisher publishing")
            resyncs.append(json.loads(read(a.path("drivers")))["fleet"]["resync_ms"])
            time.sleep(1.1)  # connected_since has a second's resolution

        # 5. Memory.
        rss_b, rss_n = rss_kib(daemon_pid(b)), rss_kib(daemon_pid(n))
        stop.set()
        churner.join()

        w50, wo50 = statistics.median(with_fleet), statistics.median(without)
        rows = [
            ("attach+detach via file, --fleet, p50", "%.0f us" % w50, ""),
            ("attach+detach via file, no fleet, p50", "%.0f us" % wo50, ""),
            ("  with / without (median of %d rounds)" % args.rounds, "%.2fx" % statistics.median(ratios),
             "<= 1.2x"),
        ]
        if split:
            rows += [
                ("attach+detach, the host on CPU 0, the fleet on CPU 1: --fleet", "%.0f us" %
                 statistics.median(split_with), ""),
                ("  the same, no fleet", "%.0f us" % statistics.median(split_without), ""),
                ("  with / without (median of %d rounds)" % args.rounds, "%.2fx" % statistics.median(split_ratios),
                 "<= 1.2x"),
            ]
        rows += [
            ("change to visible on B's mount, p50", "%.1f ms" % pct(latencies, 0.5), "<= 200 ms"),
            ("change to visible on B's mount, p99", "%.1f ms" % pct(latencies, 0.99), "<= 1000 ms"),
            ("change to visible over C's API, p50", "%.1f ms" % pct(api_latencies, 0.5), "<= 200 ms"),
            ("change to visible over C's API, p99", "%.1f ms" % pct(api_latencies, 0.99), "<= 1000 ms"),
            ("GET /fleet/accelerators?GPU,available (%d of %d), p50" % (found, total),
             "%.2f ms" % pct(gets, 0.5), "<= 10 ms"),
            ("  the same, p99", "%.2f ms" % pct(gets, 0.99), ""),
            ("full resync of one host (8), p50", "%.2f ms" % pct(resyncs, 0.5), "<= 50 ms"),
            ("  the same, max", "%.2f ms" % max(resyncs), ""),
            ("RSS of B, a view of %d remote accelerators" % (total - 8), "%.1f MiB" % (rss_b / 1024), ""),
            ("RSS of N, no fleet", "%.1f MiB" % (rss_n / 1024), ""),
        ]
        met = {
            "attach_ratio (shared CPUs)": statistics.median(ratios) <= 1.2,
            "attach_ratio (host apart)": split and statistics.median(split_ratios) <= 1.2,
            "visible_p50": pct(latencies, 0.5) <= 200 and pct(api_latencies, 0.5) <= 200,
            "visible_p99": pct(latencies, 0.99) <= 1000 and pct(api_latencies, 0.99) <= 1000,
            "list_p50": pct(gets, 0.5) <= 10,
            "resync_p50": pct(resyncs, 0.5) <= 50,
        }
        print("fleet benchmark: %d simulated hosts x %d + 3 real daemons of 8, churn 50 changes/s; %d CPUs" %
              (args.hosts, args.per_host, os.cpu_count()))
        for name, value, goal in rows:
            print("  %-58s %12s   %s" % (name, value, goal))
        print("goals: " + ", ".join("%s %s" % (k, "met" if v else "MISSED") for k, v in met.items()))
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "fleet.json"), "w") as f:
            json.dump({"rows": rows, "met": met, "attach_ratios": ratios,
                       "split_attach_ratios": split_ratios if split else None,
                       "visible_ms": latencies, "api_visible_ms": api_latencies, "get_ms": gets,
                       "resync_ms": resyncs, "rss_kib": {"b": rss_b, "n": rss_n}}, f, indent=1)
    finally:
        stop.set()
        if psql:
            psql.close()
        for m in mounts:
            m.stop()
            clear_mounts(m.mnt)
        pg.close()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
