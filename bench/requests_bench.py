#!/usr/bin/env python3
"""The accelerator requests' benchmark (issue 15): one real PostgreSQL, 3 real daemons,
then 200 simulated hosts of 8 accelerators; prints each figure beside its goal.

Measured in one run:
  - request to Bound: a POST /fleet/accelerator_requests for a GPU on A, B or C in turn
    (over the API socket of another of them), then GET until Bound; p50 and p99 (goal p50
    <= 250 ms); each request is deleted, and gone, before the next;
  - claims per second: 20 requester processes POST at once, through A, B and C, for GPUs
    of the whole fleet (200 simulated hosts, written as their publishers would, plus the 3
    real ones); claims made / wall time (goal >= 200/s); then no accelerator is held twice
    and every request holds exactly one (checked in PostgreSQL).

Usage (as root): scripts/bench-py.sh requests [--rounds 200] [--requesters 20] [--each 10]
"""
import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib

parser = argparse.ArgumentParser()
parser.add_argument("--bin", required=True)
parser.add_argument("--out", default="bench/results")
parser.add_argument("--hosts", type=int, default=200)
parser.add_argument("--per-host", type=int, default=8)
parser.add_argument("--rounds", type=int, default=200)
parser.add_argument("--requesters", type=int, default=20)
parser.add_argument("--each", type=int, default=10)
args = parser.parse_args()

os.environ["CYBORGFS_BIN"] = os.path.abspath(args.bin)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "mount"))
from harness import Mount, PrivatePostgres, clear_mounts, wait_for  # noqa: E402
from fleet_sim import UnixHTTP, get, pct, simulated_fleet  # noqa: E402

ARQS = "/fleet/accelerator_requests"


def call(conn, method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"} if body is not None else {})
    r = conn.getresponse()
    return r.status, r.read()


def requester(sock, count, start_at, results):
    """POSTs `count` GPU requests, one after the other, from start_at on; their replies."""
    conn = UnixHTTP(sock)
    while time.time() < start_at:
        time.sleep(0.001)
    replies = []
    for _ in range(count):
        status, body = call(conn, "POST", ARQS, {"device_type": "GPU", "instance_uuid": str(uuidlib.uuid4())})
        replies.append((status, json.loads(body).get("state") if status == 201 else body.decode()[:200]))
    results.put((time.time(), replies))


def main():
    work = tempfile.mkdtemp(prefix="cyborgfs-requests-bench-")
    pg = PrivatePostgres()
    mounts = []
    try:
        conninfo = pg.conninfo()

        def daemon(name):
            folder = os.path.join(work, name)
            os.mkdir(folder)
            m = Mount(folder, "--fleet", conninfo, "--fleet-bind-timeout", "3600", host=name, fake_devices=3)
            mounts.append(m)
            return m

        names = ["host-a", "host-b", "host-c"]
        hosts = [daemon(n) for n in names]
        wait_for(lambda: len(pg.psql("SELECT 1 FROM fleet_inventory")) == 9, timeout=30, what="A, B, C published")

        # 1. Request to Bound, on the 3-daemon fleet.
        latencies = []
        for i in range(args.rounds + 1):  # the first: just after the start, apart
            conn = UnixHTTP(hosts[(i + 1) % 3].api_socket)  # asked on another host than the owner
            t = time.perf_counter()
            status, body = call(conn, "POST", ARQS, {"device_type": "GPU", "instance_uuid": str(uuidlib.uuid4()),
                                                     "host": names[i % 3]})
            assert status == 201, body
            uuid = json.loads(body)["uuid"]
            while True:
                now = json.loads(get(conn, ARQS + "/" + uuid))
                if now["state"] == "Bound":
                    break
                if now["state"] == "BindFailed" or time.perf_counter() - t > 30:
                    raise AssertionError("request %s (round %d) not Bound: %s\n%s" % (
                        uuid, i, now, pg.psql("SELECT host, status, attach, updated_at, now() FROM fleet_inventory "
                                              "WHERE device_type = 'GPU'")))
            latencies.append((time.perf_counter() - t) * 1e3)
            assert call(conn, "DELETE", ARQS + "/" + uuid)[0] == 204
            while call(conn, "GET", ARQS + "/" + uuid)[0] != 404:
                time.sleep(0.005)
            conn.close()
            wait_for(lambda: pg.psql("SELECT status FROM fleet_inventory WHERE device_type = 'GPU' AND host = '%s'" %
                                     names[i % 3]) == [["available"]], what="the GPU published free again")

        # 2. Claims per second against the whole fleet.
        conn = UnixHTTP(hosts[0].api_socket)
        template = json.loads(get(conn, "/accelerators/" + os.path.basename(os.readlink(
            hosts[0].path("by-name", next(n for n in os.listdir(hosts[0].path("by-name")) if n.startswith("gpu-")))))))
        conn.close()
        with tempfile.NamedTemporaryFile("w", suffix=".sql", dir=work, delete=False) as f:
            f.write(simulated_fleet(template, args.hosts, args.per_host))
        os.chmod(work, 0o755)
        os.chmod(f.name, 0o644)
        pg.as_postgres(["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-h", pg.dir, "-p", str(pg.port),
                        "-d", "postgres", "-f", f.name])
        free = int(pg.psql("SELECT count(*) FROM fleet_inventory WHERE device_type = 'GPU' AND "
                           "status = 'available'")[0][0])
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        start_at = time.time() + 1.0
        procs = [ctx.Process(target=requester, args=(hosts[k % 3].api_socket, args.each, start_at, results))
                 for k in range(args.requesters)]
        for p in procs:
            p.start()
        done = [results.get(timeout=300) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        wall = max(t for t, _ in done) - start_at
        replies = [r for _, rs in done for r in rs]
        claimed = sum(1 for status, state in replies if status == 201 and state == "BindStarted")
        others = [r for r in replies if not (r[0] == 201 and r[1] == "BindStarted")]
        twice = pg.psql("SELECT count(*) - count(DISTINCT accelerator) FROM fleet_claims")[0][0]
        per_request = pg.psql("SELECT count(*) FROM (SELECT request FROM fleet_claims GROUP BY request "
                              "HAVING count(*) <> 1) x")[0][0]
        claims_rows = int(pg.psql("SELECT count(*) FROM fleet_claims")[0][0])

        first, latencies = latencies[0], latencies[1:]
        rows = [
            ("request to Bound on the 3-daemon fleet, p50 of %d" % len(latencies), "%.1f ms" % pct(latencies, 0.5),
             "<= 250 ms"),
            ("  the same, p99", "%.1f ms" % pct(latencies, 0.99), ""),
            ("  the first, right after the daemons started", "%.1f ms" % first, ""),
            ("claims per second, %d requesters x %d, %d free GPUs of %d hosts" %
             (args.requesters, args.each, free, args.hosts + 3), "%.0f/s" % (claimed / wall), ">= 200/s"),
            ("  claims made / asked", "%d / %d" % (claimed, len(replies)), ""),
            ("  accelerators held twice, requests not holding one", "%s, %s" % (twice, per_request), "0, 0"),
        ]
        met = {
            "bound_p50": pct(latencies, 0.5) <= 250,
            "claims_per_second": claimed / wall >= 200,
            "no_double_allocation": twice == "0" and per_request == "0" and claims_rows == claimed,
        }
        print("requests benchmark: 3 real daemons of 3 (one GPU each), then %d simulated hosts x %d; %d CPUs" %
              (args.hosts, args.per_host, os.cpu_count()))
        for name, value, goal in rows:
            print("  %-66s %12s   %s" % (name, value, goal))
        if others:
            print("  not claimed: %s" % sorted(set(map(str, others)))[:5])
        print("goals: " + ", ".join("%s %s" % (k, "met" if v else "MISSED") for k, v in met.items()))
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "requests.json"), "w") as f:
            json.dump({"rows": rows, "met": met, "bound_ms": latencies, "first_bound_ms": first, "wall_s": wall}, f, indent=1)
    finally:
        for m in mounts:
            m.stop()
            clear_mounts(m.mnt)
        pg.close()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
