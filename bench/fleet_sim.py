"""What the fleet's benchmarks share (bench/fleet_bench.py, bench/requests_bench.py): a
client of a daemon's API socket, percentiles, a kept psql connection, and the load
generator's simulated hosts, written as their publishers would write them."""
import http.client
import json
import os
import random
import socket
import subprocess
import uuid as uuidlib

VM = "8e45a2ea-5364-4b0d-a252-bf8becaa606e"
TYPES = ["GPU", "FPGA", "CRYPTO", "AICHIP"]


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (path, r.status, body[:200])
    return body


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def daemon_pid(m):
    return m.proc.pid


def quote(text):
    return "'" + text.replace("'", "''") + "'"


class Psql:
    """One psql process fed statements on its stdin: one connection, kept."""

    def __init__(self, pg):
        self.proc = subprocess.Popen(["runuser", "-u", "postgres", "--", "psql", "-q", "-X", "-v", "ON_ERROR_STOP=1",
                                      "-h", pg.dir, "-p", str(pg.port), "-d", "postgres"],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)

    def send(self, sql):
        self.proc.stdin.write(sql + "\n")
        self.proc.stdin.flush()

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=60)


def simulated_fleet(template, hosts, per_host):
    """SQL making `hosts` hosts of `per_host` accelerators each, as publishers would."""
    host_rows, acc_rows = [], []
    for h in range(hosts):
        name = "sim-%03d" % h
        host_rows.append("(%s, 1, %d, 'simulated', now() + interval '1 hour')" % (quote(name), h + 1))
        for k in range(per_host):
            record = dict(template)
            record["uuid"] = str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, "%s-%d" % (name, k)))
            record["name"] = "%s-acc%d" % (name, k)
            record["device_type"] = TYPES[k % len(TYPES)]
            record["status"] = "available" if k % 3 else "attached"
            record["attach"] = "" if k % 3 else "vm " + VM
            acc_rows.append("(%s, %s, %s, %s, %s, '', '', %s, %s, '', '', %s::jsonb, 1, %d)" % (
                quote(record["uuid"]), quote(name), quote(record["name"]), quote(record["device_type"]),
                quote(record.get("acc_type", "")), quote(record["status"]), quote(record["attach"]),
                quote(json.dumps(record)), k + 1))
    return ("BEGIN;\nINSERT INTO fleet_hosts (name, epoch, start_id, boot_id, lease_expires_at) VALUES\n" +
            ",\n".join(host_rows) + ";\nINSERT INTO fleet_accelerators (uuid, host, name, device_type, acc_type, "
            "vendor_id, product_id, status, attach, attach_handle, driver, record, epoch, seq) VALUES\n" +
            ",\n".join(acc_rows) + ";\nSELECT pg_notify('cyborgfs_fleet', 'sim');\nCOMMIT;\n")


def churn(psql, hosts, per_host, stop):
    """A status flip of a random simulated accelerator every 20 ms, as its host would publish it."""
    rnd = random.Random(7)
    while not stop.is_set():
        h, k = rnd.randrange(hosts), rnd.randrange(per_host)
        name = "sim-%03d" % h
        u = str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, "%s-%d" % (name, k)))
        status = rnd.choice(["available", "offline"])
        psql.send("BEGIN; UPDATE fleet_accelerators SET status = %s, record = jsonb_set(record, '{status}', "
                  "to_jsonb(%s::text)), seq = seq + 1, revision = nextval('fleet_revision'), updated_at = now() "
                  "WHERE uuid = %s; SELECT pg_notify('cyborgfs_fleet', %s); COMMIT;" %
                  (quote(status), quote(status), quote(u), quote(name)))
        stop.wait(0.02)


def pin(pid, cpus):
    """Every thread of `pid` on `cpus` (taskset -a)."""
    mask = hex(sum(1 << c for c in cpus))
    subprocess.run(["taskset", "-a", "-p", mask, str(pid)], check=True, capture_output=True)


def children(pid):
    """The processes whose parent is `pid` (PostgreSQL's backends of the postmaster)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found
