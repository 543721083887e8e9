"""The fleet (--fleet): hosts publish their accelerators to a real PostgreSQL.

Each test starts a PostgreSQL server of its own (harness.PrivatePostgres:
initdb and pg_ctl as the postgres user, in a temp folder) and stops it in
teardown. Several daemons, each with its own --host, database and mount,
stand for several hosts. What the center holds is read with psql, as a
scheduler or a person would.
"""
import errno
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import unittest

from harness import (BIN, HOST, Mount, MountTest, PrivatePostgres, clear_mounts, echo_into, metric, parse_metrics,
                     wait_for)

VM = "8e45a2ea-5364-4b0d-a252-bf8becaa606e"
U1 = "11111111-2222-4333-8444-555555555555"
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"  # Debian's libfaketime


def slurp(path):
    with open(path) as f:
        return f.read()


class FleetTest(MountTest):
    """One daemon (self.fs, host "testhost") publishing to self.pg."""

    lease = 30

    def setUp(self):
        self.pg = PrivatePostgres()
        self.addCleanup(self.pg.close)
        super().setUp()

    def fleet_args(self):
        """The options every daemon of the test's fleet gets."""
        return ["--fleet", self.pg.conninfo(), "--fleet-lease", str(self.lease)]

    def start(self, *args, **kwargs):
        return super().start(*self.fleet_args(), *args, **kwargs)

    def another_host(self, name, fake_devices, env=None):
        """A second daemon, host `name`, with a work folder, database and mount of its own."""
        workdir = os.path.join(self.workdir, name)
        os.mkdir(workdir)
        self.addCleanup(clear_mounts, os.path.join(workdir, "mnt"))
        m = Mount(workdir, *self.fleet_args(), host=name, fake_devices=fake_devices, env=env)
        m.args_host = name
        self.addCleanup(m.stop)
        return m

    def fleet(self):
        """The fleet's drivers-file part: the publisher's state."""
        with open(self.fs.path("drivers")) as f:
            return json.load(f)["fleet"]

    def rows(self, sql):
        try:
            return self.pg.psql(sql)
        except AssertionError:  # the schema is not there yet
            return None

    def inventory(self, host=HOST):
        """{uuid: (name, status, attach, host_status)} of `host` in the fleet's view."""
        rows = self.rows("SELECT uuid, name, status, attach, host_status FROM fleet_inventory WHERE host = '%s'" % host)
        return {r[0]: tuple(r[1:]) for r in rows or []}

    def published(self, predicate, what):
        wait_for(lambda: predicate(self.inventory()), timeout=10, what=what)

    def published_specs(self):
        """{uuid: the "num" of its spec} of the accelerators in PostgreSQL, as text."""
        return {r[0]: r[1] for r in self.rows("SELECT uuid, record->'acc_specs'->>'num' FROM fleet_accelerators "
                                              "WHERE NOT removed") or []}

    def write_specs(self, count, before_each):
        """`count` spec writes {"num": i} round the accelerators, before_each(i) first; the
        last spec of each, as published_specs() gives it."""
        uuids = self.uuids()
        for i in range(count):
            before_each(i)
            self.write_file(self.fs.path("accelerators", uuids[i % 4], "spec"), json.dumps({"num": i}).encode())
        return {uuids[i % 4]: str(i) for i in range(count - 4, count)}

    def local(self):
        """{uuid: (name, status, attach)} through the mount."""
        out = {}
        for u in self.uuids():
            out[u] = tuple(self.read("accelerators", u, f).rstrip("\n") for f in ("name", "status", "attach"))
        return out


class PublishTest(FleetTest):

    def test_a_host_publishes_its_accelerators_and_then_each_change(self):
        wait_for(lambda: len(self.inventory()) == 4, what="the 4 fake accelerators in PostgreSQL")
        self.assertEqual({u: v[:3] for u, v in self.inventory().items()}, self.local())
        self.assertEqual(self.pg.psql("SELECT status FROM fleet_host_status WHERE host = '%s'" % HOST), [["up"]])
        gpu = self.fake_uuid("GPU")
        echo_into(self.fs.path("accelerators", gpu, "attach"), "vm %s\n" % VM)
        self.published(lambda inv: inv[gpu][1:3] == ("attached", "vm " + VM), "the attach in PostgreSQL")
        # The metrics say the publisher's state: nothing waiting, a publication made.
        wait_for(lambda: self.fleet()["outbox"] == 0, what="the outbox drained")
        samples = parse_metrics(self.api("GET", "/metrics").body.decode())
        self.assertEqual(metric(samples, "cyborgfs_fleet_outbox_depth"), 0)
        self.assertGreater(metric(samples, "cyborgfs_fleet_last_publish_timestamp_seconds"), time.time() - 60)
        # A change over the REST API, and the record as the API shows it.
        reply = self.api("PUT", "/accelerators/%s/acc_specs" % gpu, {"acc_specs": {"num": 7}})
        self.assertEqual(reply.status, 200)
        wait_for(lambda: self.rows("SELECT record->'acc_specs'->>'num' FROM fleet_accelerators "
                                   "WHERE uuid = '%s'" % gpu) == [["7"]], what="the spec in PostgreSQL")
        record = json.loads(self.pg.psql("SELECT record FROM fleet_accelerators WHERE uuid = '%s'" % gpu)[0][0])
        self.assertEqual(record, self.api("GET", "/accelerators/" + gpu).json())
        # Made and removed: in the view, then gone from it.
        self.make(U1)
        self.published(lambda inv: U1 in inv, "a new accelerator in PostgreSQL")
        os.rmdir(self.fs.path("accelerators", U1))
        self.published(lambda inv: U1 not in inv and len(inv) == 4, "the removed accelerator gone")
        self.assertEqual(self.fleet()["state"], "ok")
        self.assertEqual(self.fleet()["outbox"], 0)

    def test_two_hosts_publish_side_by_side_and_each_sees_the_other(self):
        other = self.another_host("otherhost", 2)
        wait_for(lambda: len(self.inventory()) == 4 and len(self.inventory("otherhost")) == 2,
                 what="both hosts' accelerators")
        hosts = self.pg.psql("SELECT host, status FROM fleet_host_status ORDER BY host")
        self.assertEqual(hosts, [["otherhost", "up"], [HOST, "up"]])
        # A change on one host reaches the center, not the other host's own tree.
        u = sorted(self.inventory("otherhost"))[0]
        echo_into(other.path("accelerators", u, "attach"), "vm %s\n" % VM)
        wait_for(lambda: self.inventory("otherhost")[u][2] == "vm " + VM, what="the other host's attach")
        self.assertNotIn(u, self.uuids())

    def test_a_change_delivered_again_or_an_older_one_applies_nothing(self):
        gpu = self.fake_uuid("GPU")
        wait_for(lambda: len(self.inventory()) == 4, what="the accelerators in PostgreSQL")
        echo_into(self.fs.path("accelerators", gpu, "attach"), "vm %s\n" % VM)
        self.published(lambda inv: inv[gpu][2] == "vm " + VM, "the attach")
        seq, revision = self.pg.psql("SELECT seq, revision FROM fleet_accelerators WHERE uuid = '%s'" % gpu)[0]
        # The same change queued again, and an older one, as a retry after a lost
        # acknowledgement would send them; another change wakes the publisher.
        db = sqlite3.connect(self.fs.db, timeout=10)
        db.execute("INSERT OR REPLACE INTO fleet_outbox (uuid, seq) VALUES (?, ?)", (gpu, int(seq)))
        db.execute("INSERT OR REPLACE INTO fleet_outbox (uuid, seq) VALUES (?, ?)",
                   (self.fake_uuid("FPGA"), int(seq) - 1))
        db.commit()
        db.close()
        crypto = self.fake_uuid("CRYPTO")
        echo_into(self.fs.path("accelerators", crypto, "attach"), "vm %s\n" % VM)
        self.published(lambda inv: inv[crypto][2] == "vm " + VM, "the next change")
        wait_for(lambda: self.fleet()["outbox"] == 0, what="the outbox drained")
        self.assertEqual(self.pg.psql("SELECT seq, revision FROM fleet_accelerators WHERE uuid = '%s'" % gpu),
                         [[seq, revision]], "a change delivered twice is applied once")
        fpga = self.pg.psql("SELECT seq FROM fleet_accelerators WHERE uuid = '%s'" % self.fake_uuid("FPGA"))
        self.assertGreaterEqual(int(fpga[0][0]), 0)
        self.assertLess(int(fpga[0][0]), int(seq), "an older change is not applied over the newer one")


class ViewTest(FleetTest):
    """MOUNT/fleet/ and GET /fleet/...: every host's accelerators, from any host."""

    lease = 3

    def test_cyborgfs_list_fleet_shows_every_hosts_accelerators_with_its_host(self):
        b = self.another_host("hostb", 2)
        wait_for(lambda: len(self.api("GET", "/fleet/accelerators").json()["accelerator"]) == 6,
                 what="both hosts in the view")
        r = subprocess.run([BIN, "list", "--fleet", "--api-socket", self.fs.api_socket], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split()[:2], ["HOST", "NAME"])
        self.assertEqual(sorted(line.split()[0] for line in lines[1:]), sorted([HOST] * 4 + ["hostb"] * 2))
        for u in os.listdir(b.path("accelerators")):
            self.assertIn(u, r.stdout)

    def view_state(self, m):
        """The fleet view's drivers-file part of daemon `m`."""
        return json.loads(slurp(m.path("drivers")))["fleet_view"]

    def files_of(self, folder):
        """{file: content} of an accelerator folder."""
        return {f: slurp(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}

    def test_every_host_sees_every_hosts_accelerators_in_its_files_and_over_its_api(self):
        other = self.another_host("otherhost", 2)
        fleet = other.path("fleet")
        wait_for(lambda: sorted(os.listdir(os.path.join(fleet, "accelerators"))) ==
                 sorted(self.uuids() + os.listdir(other.path("accelerators"))), what="all 6 accelerators on B")
        self.assertEqual(sorted(os.listdir(fleet)), ["accelerators", "accelerators.json", "hosts", "requests"])
        self.assertEqual(sorted(os.listdir(os.path.join(fleet, "hosts"))), ["otherhost", HOST])
        mine = os.path.join(fleet, "hosts", HOST)
        self.assertEqual(sorted(os.listdir(mine)), ["accelerators", "lease_expires_at", "status"])
        self.assertEqual(slurp(os.path.join(mine, "status")), "up\n")
        lease = int(slurp(os.path.join(mine, "lease_expires_at")))
        self.assertLess(abs(lease - time.time()), 60)
        # The same files, with the same content, as on the host that has them; 0444.
        for u in self.uuids():
            there = os.path.join(mine, "accelerators", u)
            self.assertEqual(self.files_of(there), self.files_of(self.fs.path("accelerators", u)), u)
            for f in os.listdir(there):
                self.assertEqual(os.stat(os.path.join(there, f)).st_mode & 0o777, 0o444, f)
            link = os.path.join(fleet, "accelerators", u)
            self.assertEqual(os.readlink(link), "../hosts/%s/accelerators/%s" % (HOST, u))
            self.assertEqual(slurp(os.path.join(link, "name")), self.read("accelerators", u, "name"))
        records = json.loads(slurp(os.path.join(fleet, "accelerators.json")))["accelerator"]
        self.assertEqual(sorted((r["host"], r["uuid"]) for r in records),
                         sorted([(HOST, u) for u in self.uuids()] +
                                [("otherhost", u) for u in os.listdir(other.path("accelerators"))]))
        # Over B's REST API.
        hosts = self.api("GET", "/fleet/hosts", sock=other.api_socket).json()["hosts"]
        self.assertEqual([(h["name"], h["status"], len(h["accelerators"])) for h in hosts],
                         [("otherhost", "up", 2), (HOST, "up", 4)])
        gpu = self.fake_uuid("GPU")
        record = self.api("GET", "/fleet/accelerators/" + gpu, sock=other.api_socket).json()
        local = self.api("GET", "/accelerators/" + gpu).json()
        self.assertEqual(record.pop("host"), HOST)
        self.assertEqual(record.pop("host_status"), "up")
        self.assertEqual(record, local)
        gpus = self.api("GET", "/fleet/accelerators?device_type=GPU&status=available", sock=other.api_socket).json()
        self.assertEqual(sorted(r["uuid"] for r in gpus["accelerator"]),
                         sorted(u for u in self.uuids() + os.listdir(other.path("accelerators"))
                                if self.api("GET", "/fleet/accelerators/" + u,
                                            sock=other.api_socket).json()["device_type"] == "GPU"))
        self.assertEqual([r["host"] for r in self.api("GET", "/fleet/accelerators?host=otherhost",
                                                       sock=other.api_socket).json()["accelerator"]],
                         ["otherhost", "otherhost"])
        bad = self.api("GET", "/fleet/accelerators?colour=red", sock=other.api_socket)
        self.assertEqual(bad.status, 400)
        self.assertIn("unknown filter", bad.error())
        self.assertEqual(self.api("GET", "/fleet/accelerators/" + U1, sock=other.api_socket).status, 404)
        # A change on A: on B's mount and over B's API within 2 s.
        status = os.path.join(mine, "accelerators", gpu, "attach")
        self.assertEqual(slurp(status), "")
        echo_into(self.fs.path("accelerators", gpu, "attach"), "vm %s\n" % VM)
        wait_for(lambda: slurp(status) == "vm %s\n" % VM, timeout=2, what="the attach on B's mount")
        wait_for(lambda: self.api("GET", "/fleet/accelerators/" + gpu, sock=other.api_socket).json()["status"] ==
                 "attached", timeout=2, what="the attach over B's API")
        # A new accelerator on A, then removed: in B's folders, then gone.
        self.make(U1)
        wait_for(lambda: U1 in os.listdir(os.path.join(mine, "accelerators")), timeout=2, what="a new one on B")
        os.rmdir(self.fs.path("accelerators", U1))
        wait_for(lambda: U1 not in os.listdir(os.path.join(fleet, "accelerators")), timeout=2, what="it gone on B")
        self.assertEqual(self.view_state(other)["state"], "ok")

    def test_a_killed_host_is_down_in_the_others_views_with_its_accelerators_and_up_after_its_restart(self):
        other = self.another_host("otherhost", 2)
        status = other.path("fleet", "hosts", HOST, "status")
        wait_for(lambda: os.path.exists(status) and len(os.listdir(other.path("fleet", "accelerators"))) == 6,
                 what="both hosts on B")
        watcher = self.watcher(status, idle=30)  # poll(2) on it, as on an accelerator's status
        woken = []
        reader = threading.Thread(target=lambda: woken.extend(line.strip() for line in watcher.stdout))
        reader.start()
        self.addCleanup(reader.join)
        self.addCleanup(watcher.kill)  # before the join
        self.fs.crash()
        wait_for(lambda: "woken down" in woken, timeout=15, what="the watcher woken: A down on B")
        self.assertEqual(slurp(status), "down\n")
        self.assertEqual(len(os.listdir(other.path("fleet", "hosts", HOST, "accelerators"))), 4, "kept")
        hosts = {h["name"]: h["status"] for h in self.api("GET", "/fleet/hosts", sock=other.api_socket).json()["hosts"]}
        self.assertEqual(hosts, {HOST: "down", "otherhost": "up"})
        records = self.api("GET", "/fleet/accelerators?host=" + HOST, sock=other.api_socket).json()["accelerator"]
        self.assertEqual({r["host_status"] for r in records}, {"down"})
        # Nobody vouches for a down host's devices: their health is unknown, with what they last said.
        self.assertEqual({r["health"] for r in records}, {"unknown"})
        health = other.path("fleet", "hosts", HOST, "accelerators", records[0]["uuid"], "health")
        self.assertEqual(slurp(health), "unknown\nhost %s is down (its lease ran out); it last said: ok\n" % HOST)
        self.fs = self.start(db=self.fs.db)
        wait_for(lambda: slurp(status) == "up\n", what="A up again on B")
        wait_for(lambda: woken[-1:] == ["woken up"], what="the watcher woken: A up on B")
        # One wake per change B saw (two quick ones may make one), each re-read the new value.
        flips = [line.split(" is ")[1].split(" ")[0] for line in other.log_text().splitlines()
                 if "fleet view: host %s is " % HOST in line]
        self.assertLessEqual(len(woken), len(flips), (woken, flips))
        self.assertEqual(flips[-2:], ["down", "up"])
        self.assertEqual(slurp(health), "ok\n")
        self.assertEqual(len(os.listdir(other.path("fleet", "accelerators"))), 6, "no duplicates")
        self.assertEqual(len(json.loads(slurp(other.path("fleet", "accelerators.json")))["accelerator"]), 6)

    def test_a_value_that_changes_while_it_is_read_is_read_whole(self):
        """status goes attached/available 20 times a second: every read to the end of
        file of it (and of accelerators.json) is one value, never the start of one and
        the end of the next."""
        gpu = self.fake_uuid("GPU")
        status = self.fs.path("fleet", "hosts", HOST, "accelerators", gpu, "status")
        wait_for(lambda: os.path.exists(status), what="the GPU in the view")
        stop = threading.Event()

        def toggle():
            while not stop.is_set():
                for value in ("vm %s\n" % VM, "\n"):
                    echo_into(self.fs.path("accelerators", gpu, "attach"), value)
                    time.sleep(0.01)

        toggler = threading.Thread(target=toggle)
        toggler.start()
        seen = {}
        try:
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                for _ in range(20):
                    value = slurp(status)
                    seen[value] = seen.get(value, 0) + 1
                json.loads(slurp(self.fs.path("fleet", "accelerators.json")))
        finally:
            stop.set()
            toggler.join()
        self.assertEqual(sorted(seen), ["attached\n", "available\n"], seen)

    def test_the_view_is_read_only(self):
        gpu = self.fake_uuid("GPU")
        folder = self.fs.path("fleet", "hosts", HOST, "accelerators", gpu)
        wait_for(lambda: os.path.exists(folder), what="this host in its own fleet view")
        for action in (lambda: echo_into(os.path.join(folder, "attach"), "vm %s\n" % VM),
                       lambda: os.truncate(os.path.join(folder, "spec"), 0),
                       lambda: os.mkdir(self.fs.path("fleet", "hosts", "newhost")),
                       lambda: os.rmdir(folder),
                       lambda: os.unlink(os.path.join(folder, "name")),
                       lambda: os.unlink(self.fs.path("fleet", "accelerators", gpu)),
                       lambda: os.rename(os.path.join(folder, "name"), os.path.join(folder, "other")),
                       lambda: open(os.path.join(folder, "new-file"), "w"),
                       lambda: os.symlink("x", self.fs.path("fleet", "x"))):
            self.assertEqual(self.errno_of(action), errno.EACCES, action)
        self.assertEqual(self.read("accelerators", gpu, "attach"), "", "nothing changed")
        for method in ("PUT", "POST", "DELETE", "PATCH"):
            reply = self.api(method, "/fleet/accelerators/" + gpu, {"instance_uuid": VM})
            self.assertEqual(reply.status, 405, method)
            self.assertIn("not allowed", reply.error())
            self.assertEqual(reply.headers["allow"], "GET, HEAD, OPTIONS")
        self.assertEqual(self.api("POST", "/fleet/hosts", {}).status, 405)

    def test_the_view_stays_while_postgresql_is_away_and_catches_up_after(self):
        other = self.another_host("otherhost", 2)
        folder = other.path("fleet", "hosts", HOST, "accelerators")
        wait_for(lambda: os.path.exists(folder) and len(os.listdir(folder)) == 4, what="A on B")
        self.pg.stop()
        gpu = self.fake_uuid("GPU")
        echo_into(self.fs.path("accelerators", gpu, "attach"), "vm %s\n" % VM)  # its NOTIFY will never come
        wait_for(lambda: self.view_state(other)["state"] == "degraded",
                 timeout=15, what="B's view to say it cannot read")
        self.assertRegex(self.view_state(other)["problems"][0],
                         r"^PostgreSQL unreadable since .*: the fleet view is as read at ")
        self.assertEqual(len(os.listdir(folder)), 4, "the view stays as last read")
        self.pg.start()
        wait_for(lambda: slurp(os.path.join(folder, gpu, "attach")) == "vm %s\n" % VM, timeout=60,
                 what="the attach on B once PostgreSQL is back")


class NoFleetTest(MountTest):

    def test_without_fleet_there_is_no_fleet_view(self):
        self.assertNotIn("fleet", os.listdir(self.fs.mnt))
        self.assertFalse(os.path.exists(self.fs.path("fleet")))
        reply = self.api("GET", "/fleet/hosts")
        self.assertEqual(reply.status, 404)
        self.assertIn("without --fleet", reply.error())


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 to `port` that cut() breaks: every connection
    through it is shut at once, in whatever state it is (mid-publish); after
    partition() it also shuts every new one, until heal()."""

    def __init__(self, port):
        self.target = port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open = []
        self.cuts = 0
        self.partitioned = False
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.partitioned:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    @staticmethod
    def pump(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            for s in self.open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()  # its pump ends on the error
            self.open = []
            self.cuts += 1

    def partition(self):
        self.partitioned = True
        self.cut()

    def heal(self):
        self.partitioned = False

    def close(self):
        self.listener.close()
        self.cut()


class CutTest(FleetTest):
    """The publisher's connection only goes through a proxy that cuts it."""

    def setUp(self):
        self.pg = PrivatePostgres()
        self.addCleanup(self.pg.close)
        self.proxy = CuttingProxy(self.pg.port)
        self.addCleanup(self.proxy.close)
        MountTest.setUp(self)

    def start(self, *args, **kwargs):
        conninfo = "host=127.0.0.1 port=%d user=postgres dbname=postgres" % self.proxy.port
        return MountTest.start(self, "--fleet", conninfo, *args, **kwargs)

    def test_the_connection_cut_in_the_middle_of_publishing_loses_nothing(self):
        wait_for(lambda: len(self.inventory()) == 4, what="the accelerators in PostgreSQL")
        want = self.write_specs(60, lambda i: i % 10 == 5 and self.proxy.cut())
        wait_for(lambda: self.published_specs() == want, timeout=60,
                 what="the last change of each accelerator in PostgreSQL")
        wait_for(lambda: self.fleet()["state"] == "ok" and self.fleet()["outbox"] == 0, timeout=60,
                 what="the publisher back and drained")
        self.assertEqual(self.pg.psql("SELECT count(*) FROM fleet_accelerators"), [["4"]])
        self.assertIn("trying again", self.fs.log_text(), "the cuts were noticed")


class OutageTest(FleetTest):

    def test_local_changes_go_on_while_postgresql_is_stopped_and_reach_it_after(self):
        wait_for(lambda: len(self.inventory()) == 4, what="the accelerators in PostgreSQL")
        self.pg.stop()
        specs, uuids, stopped = {}, self.uuids(), time.monotonic()
        i = 0
        while time.monotonic() - stopped < 30 or i < 40:  # 30 s of acknowledged changes while the center is away
            u = uuids[i % 4]
            self.write_file(self.fs.path("accelerators", u, "spec"), json.dumps({"num": i}).encode())
            specs[u] = i
            i += 1
            time.sleep(0.2)
        for u, i in specs.items():
            self.assertEqual(json.loads(self.read("accelerators", u, "spec")), {"num": i})
        wait_for(lambda: self.fleet()["problems"][:1] != [] and
                 self.fleet()["problems"][0].startswith("PostgreSQL unreachable"),
                 timeout=15, what="the publisher to say it cannot reach PostgreSQL")
        fleet = self.fleet()
        self.assertEqual(fleet["state"], "degraded")
        self.assertEqual(fleet["outbox"], 4, "one entry per accelerator, however many changes")
        self.assertRegex(fleet["problems"][0], r"^PostgreSQL unreachable since .*: 4 changes waiting")
        self.pg.start()
        wait_for(lambda: self.fleet()["state"] == "ok" and self.fleet()["outbox"] == 0, timeout=60,
                 what="the outbox drained once PostgreSQL is back")
        self.assertEqual(self.published_specs(), {u: str(i) for u, i in specs.items()})

    def test_postgresql_killed_with_9_under_load_converges_after_its_restart(self):
        wait_for(lambda: len(self.inventory()) == 4, what="the accelerators in PostgreSQL")
        faults = {10: self.pg.kill, 20: self.pg.start}
        want = self.write_specs(30, lambda i: i in faults and faults[i]())
        wait_for(lambda: self.published_specs() == want, timeout=60,
                 what="the last change of each accelerator in PostgreSQL")


class LeaseTest(FleetTest):
    lease = 3

    def test_a_killed_host_is_down_after_its_lease_and_up_again_when_it_comes_back(self):
        wait_for(lambda: len(self.inventory()) == 4, what="the accelerators in PostgreSQL")
        self.fs.crash()
        wait_for(lambda: set(v[3] for v in self.inventory().values()) == {"down"}, timeout=15,
                 what="the host down once its lease ran out")
        self.assertEqual(self.pg.psql("SELECT status FROM fleet_host_status"), [["down"]])
        self.assertEqual(len(self.inventory()), 4, "its accelerators are kept")
        self.fs = self.start(db=self.fs.db)
        wait_for(lambda: set(v[3] for v in self.inventory().values()) == {"up"}, what="the host up again")
        self.assertEqual(self.pg.psql("SELECT count(*) FROM fleet_accelerators"), [["4"]], "no duplicates")
        self.assertEqual(self.pg.psql("SELECT epoch FROM fleet_hosts"), [["2"]], "a new start, a new epoch")

    def test_a_host_whose_clock_is_far_off_is_never_down_while_it_renews(self):
        for offset in ("-600s", "+600s"):  # the host's clock 10 minutes behind, then ahead
            skewed = self.another_host("skewed" + offset[0].replace("-", "behind").replace("+", "ahead"), 1,
                                       env={"LD_PRELOAD": FAKETIME, "FAKETIME": offset,
                                            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                                            # an ASan build's runtime then is not the first library
                                            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                                            ":verify_asan_link_order=0"})
            host = skewed.args_host
            wait_for(lambda: self.inventory(host), what="the skewed host's accelerator")
            for _ in range(8):  # over 2 leases: up every time it is looked at
                self.assertEqual(self.pg.psql("SELECT status FROM fleet_host_status WHERE host = '%s'" % host),
                                 [["up"]])
                time.sleep(0.8)
            ahead = float(self.pg.psql("SELECT extract(epoch FROM lease_expires_at - now()) FROM fleet_hosts "
                                       "WHERE name = '%s'" % host)[0][0])
            self.assertTrue(0 < ahead <= self.lease, ahead)
            logged = skewed.log_text().split(" ", 1)[0]  # the daemon's own clock: far off indeed
            skew = time.mktime(time.strptime(logged[:19], "%Y-%m-%dT%H:%M:%S")) - time.mktime(time.gmtime())
            self.assertGreater(abs(skew), 300, logged)
            self.assertEqual(skewed.stop(), 0)

    def test_the_lease_is_on_the_servers_clock(self):
        wait_for(lambda: len(self.inventory()) == 4, what="the accelerators in PostgreSQL")
        ahead = self.pg.psql("SELECT extract(epoch FROM lease_expires_at - now()) FROM fleet_hosts")
        self.assertGreater(float(ahead[0][0]), 0)
        self.assertLessEqual(float(ahead[0][0]), self.lease)


class RefusalTest(FleetTest):

    def test_a_newer_schema_is_not_published_to_and_local_work_goes_on(self):
        wait_for(lambda: len(self.inventory()) == 4, what="the accelerators in PostgreSQL")
        self.assertEqual(self.fs.stop(), 0)
        self.pg.psql("UPDATE cyborgfs_schema SET version = 99")
        self.fs = self.start(db=self.fs.db)
        wait_for(lambda: self.fleet()["state"] == "failed", what="the refusal")
        self.assertIn("the fleet's schema is version 99, newer than this cyborgfs knows", self.fleet()["problems"][0])
        gpu = self.fake_uuid("GPU")
        echo_into(self.fs.path("accelerators", gpu, "attach"), "vm %s\n" % VM)
        self.assertEqual(self.read("accelerators", gpu, "status"), "attached\n")
        self.assertIn("newer than this cyborgfs knows", self.fs.log_text())

    def test_a_schema_of_an_older_cyborgfs_is_migrated(self):
        wait_for(lambda: len(self.inventory()) == 4, what="the accelerators in PostgreSQL")
        self.assertEqual(self.fs.stop(), 0)
        # The schema as version 1 left it.
        self.pg.psql("DROP FUNCTION fleet_claim; DROP TABLE fleet_claims; DROP TABLE fleet_requests; "
                     "DROP FUNCTION fleet_request_revision; DROP FUNCTION fleet_requests_changed; "
                     "DROP INDEX fleet_accelerators_by_host_revision; "
                     "CREATE INDEX fleet_accelerators_by_host ON fleet_accelerators (host); "
                     "UPDATE cyborgfs_schema SET version = 1")
        self.fs = self.start(db=self.fs.db)
        wait_for(lambda: self.fleet()["state"] == "ok", what="publishing after the migration")
        self.assertEqual(self.pg.psql("SELECT version FROM cyborgfs_schema"), [["5"]])
        indexes = [r[0] for r in self.pg.psql("SELECT indexname FROM pg_indexes WHERE tablename = "
                                              "'fleet_accelerators' ORDER BY indexname")]
        self.assertIn("fleet_accelerators_by_host_revision", indexes)
        self.assertNotIn("fleet_accelerators_by_host", indexes)
        self.assertEqual(len(self.inventory()), 4)
        self.assertIn("schema migrated from version 1 to 5", self.fs.log_text())
        self.assertEqual(self.pg.psql("SELECT count(*) FROM fleet_requests"), [["0"]])

    def test_an_old_copy_of_the_database_is_fenced_and_the_center_keeps_the_newer_state(self):
        wait_for(lambda: len(self.inventory()) == 4, what="the accelerators in PostgreSQL")
        self.assertEqual(self.fs.stop(), 0)
        old = os.path.join(self.workdir, "old.db")
        shutil.copy(self.fs.db, old)  # the backup: epoch 1
        self.fs = self.start(db=self.fs.db)  # epoch 2: 100 changes and an attach after the copy
        want = self.write_specs(100, lambda i: None)
        gpu = self.fake_uuid("GPU")
        echo_into(self.fs.path("accelerators", gpu, "attach"), "vm %s\n" % VM)
        self.published(lambda inv: inv[gpu][2] == "vm " + VM, "the attach of epoch 2")
        wait_for(lambda: self.published_specs() == want, what="the 100 changes of epoch 2")
        self.assertEqual(self.fs.stop(), 0)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.fs.db + suffix):
                os.unlink(self.fs.db + suffix)
        shutil.copy(old, self.fs.db)  # restored: its next start is epoch 2 again
        self.fs = self.start(db=self.fs.db)
        wait_for(lambda: self.fleet()["state"] == "failed", what="the fencing")
        self.assertIn("fenced: host testhost is published by a start this database does not know (epoch 2",
                      self.fleet()["problems"][0])
        self.assertEqual(self.read("accelerators", gpu, "attach"), "")  # the old copy's
        self.assertEqual(self.inventory()[gpu][2], "vm " + VM, "the center keeps the newer state")
        self.assertEqual(self.published_specs(), want)


if __name__ == "__main__":
    unittest.main()
