"""kill -9 of the daemon: what was acknowledged survives, the dead mount is replaced.

The crash test runs writer threads against the pci driver on a fake sysfs tree
(answered by tests/sysfs/fake_kernel.py), half of them through the files and
half through the REST API, kills the daemon at random moments,
restarts it over its dead mount and checks every acknowledged change, the
database's integrity and the sysfs bindings.
"""
import contextlib
import ctypes
import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import unittest
import uuid as uuidlib

from harness import (BIN, HOST, BackgroundMount, MountTest, UnixHTTPConnection, echo_into, http_request, is_mounted,
                     is_served, wait_for)
from pci_test import KernelTestBase

VM = "11111111-2222-4333-8444-555555555555"


def dead_fuse_mount(path, fstype="fuse.otherfs"):
    """Mounts a FUSE filesystem of another kind on `path` whose daemon is gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("/dev/fuse", os.O_RDWR)
    try:
        options = "fd=%d,rootmode=40000,user_id=0,group_id=0" % fd
        if libc.mount(b"otherfs", path.encode(), fstype.encode(), 0, options.encode()) != 0:
            raise OSError(ctypes.get_errno(), "mount " + path)
    finally:
        os.close(fd)  # the connection dies with its only descriptor


class StaleMountTest(MountTest):
    def test_a_restart_replaces_its_own_dead_mount(self):
        os.mkdir(self.fs.path("accelerators", "8e45a2ea-5364-4b0d-a252-bf8becaa606e"))
        self.fs.crash(clear=False)
        with self.assertRaises(OSError) as dead:
            os.listdir(self.fs.mnt)
        self.assertEqual(dead.exception.errno, errno.ENOTCONN)
        self.fs = self.start(db=self.fs.db)
        self.assertIn("8e45a2ea-5364-4b0d-a252-bf8becaa606e", self.uuids())
        self.assertIn("cleared the dead cyborgfs mount on %s (database %s)" % (self.fs.mnt, self.fs.db),
                      self.fs.log_text())
        with open("/proc/self/mounts") as mounts:  # replaced, not stacked; named by its database
            self.assertEqual([line.split()[:3] for line in mounts if line.split()[1] == self.fs.mnt],
                             [[self.fs.db, self.fs.mnt, "fuse.cyborgfs"]])

    def refused(self, mnt, words):
        db = os.path.join(self.workdir, "other.db")
        r = subprocess.run([BIN, "-f", "--db", db, "--drivers", "none", mnt], capture_output=True, text=True,
                           timeout=20, stdin=subprocess.DEVNULL)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn(words, r.stderr)

    def test_a_second_daemon_on_a_live_mountpoint_refuses_to_start(self):
        self.refused(self.fs.mnt, "is already served by a running cyborgfs (pid %d, database %s)"
                     % (self.fs.proc.pid, self.fs.db))
        self.assertTrue(is_served(self.fs.mnt))  # the first one is untouched
        self.assertEqual(len(self.uuids()), 4)

    def test_another_filesystem_on_the_mountpoint_is_left_alone_live_or_dead(self):
        mnt = os.path.join(self.workdir, "taken")
        os.mkdir(mnt)
        subprocess.run(["mount", "-t", "tmpfs", "someone-elses", mnt], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", mnt])
        self.refused(mnt, "already has a tmpfs filesystem mounted on it")
        self.assertTrue(is_mounted(mnt))
        subprocess.run(["umount", mnt], check=True)
        dead_fuse_mount(mnt)
        self.refused(mnt, "already has a fuse.otherfs filesystem mounted on it")
        with self.assertRaises(OSError) as dead:
            os.listdir(mnt)
        self.assertEqual(dead.exception.errno, errno.ENOTCONN)  # still there, still dead


class LivenessTest(MountTest):
    """A live daemon is never taken for a dead one, however it was started and
    whoever took its database's lock."""

    def setUp(self):
        super().setUp()
        self.background = BackgroundMount(os.path.join(self.workdir, "bg"), os.path.join(self.workdir, "bg.db"))
        self.addCleanup(self.background.stop)
        self.marker = "8e45a2ea-5364-4b0d-a252-bf8becaa606e"
        os.mkdir(os.path.join(self.background.mnt, "accelerators", self.marker))

    def start_over(self, *args):
        r = subprocess.run([BIN, *args, self.background.mnt], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        return r.stderr

    def assert_still_serving(self):
        self.assertTrue(self.background.alive())
        self.assertTrue(os.path.isdir(os.path.join(self.background.mnt, "accelerators", self.marker)))
        self.assertNotIn("cleared the dead cyborgfs mount", self.fs.log_text())

    def test_a_second_start_on_another_database_refuses(self):
        err = self.start_over("--db", os.path.join(self.workdir, "other.db"), "--drivers", "none")
        self.assertIn("is already served by a running cyborgfs (pid %d, database %s)"
                      % (self.background.pid, self.background.db), err)
        self.assert_still_serving()

    def test_a_second_start_on_the_same_database_refuses(self):
        err = self.start_over("--db", self.background.db, "--drivers", "none")
        self.assertIn("is in use by another cyborgfs", err)
        self.assert_still_serving()

    def test_check_refuses_over_a_live_daemon(self):
        # systemd's ExecStartPre=cyborgfs --check over a daemon started by hand
        for db in (self.background.db, os.path.join(self.workdir, "other.db")):
            self.start_over("--check", "--db", db, "--drivers", "none")
            self.assert_still_serving()
        self.assertFalse(os.path.exists(os.path.join(self.workdir, "other.db")))  # --check made nothing

    def test_the_start_says_where_the_log_goes(self):
        # No syslog socket here: the log goes beside the database.
        log = self.background.db + ".log"
        if os.path.exists("/dev/log"):
            self.skipTest("this machine has a syslog socket")
        self.assertIn("the log goes to " + log, self.background.start_stderr)
        with open(log) as f:
            self.assertIn('file="mkdir"', f.read())

    def test_a_database_moved_away_is_noticed_and_the_live_daemon_kept(self):
        mnt, db = self.background.mnt, self.background.db
        os.rename(db, db + ".moved")
        spec = os.path.join(mnt, "accelerators", self.marker, "spec")
        fd = os.open(spec, os.O_WRONLY | os.O_TRUNC)
        try:
            with self.assertRaises(OSError) as refused:
                os.write(fd, b'{"num": 2}')
        finally:
            os.close(fd)
        self.assertEqual(refused.exception.errno, errno.EROFS)
        with open(os.path.join(mnt, "accelerators", self.marker, "error")) as f:
            self.assertIn("was moved or deleted while cyborgfs ran", f.read())
        with open(os.path.join(mnt, "drivers")) as f:
            database = json.load(f)["database"]
        self.assertEqual(database["state"], "failed")
        self.assertIn("was moved or deleted", database["problems"][0])
        with open(spec) as f:  # reads go on
            self.assertEqual(f.read(), "{}\n")
        err = self.start_over("--db", db, "--drivers", "none")  # the path now names no running daemon's file
        self.assertIn("is already served by a running cyborgfs (database %s, which is no longer at that path" % db,
                      err)
        self.assert_still_serving()


class DatabaseFileTest(MountTest):
    def run_bin(self, *args):
        return subprocess.run([BIN, "-f", *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)

    def test_an_emptied_database_is_refused_and_left_as_it_is(self):
        self.fs.stop()
        with open(self.fs.db, "w"):
            pass  # truncated to 0 bytes
        for wal in (self.fs.db + "-wal", self.fs.db + "-shm"):
            if os.path.exists(wal):
                os.unlink(wal)
        r = self.run_bin("--db", self.fs.db, "--drivers", "fake", self.fs.mnt)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("it is not a cyborgfs database (the file is empty, 0 bytes)", r.stderr)
        self.assertEqual(os.path.getsize(self.fs.db), 0)

    def test_a_small_disk_gets_enospc_and_works_again_once_there_is_room(self):
        disk = os.path.join(self.workdir, "small")
        os.mkdir(disk)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "cyborgfs-test-disk", disk], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", disk])
        self.fs.stop()
        self.fs = self.start(db=os.path.join(disk, "cyborgfs.db"))
        u = self.fake_uuid("GPU")
        spec = self.fs.path("accelerators", u, "spec")
        filler = os.path.join(disk, "filler")
        st = os.statvfs(disk)
        with open(filler, "wb") as f:  # leave 1.5 MiB
            f.write(b"\0" * (st.f_bavail * st.f_frsize - 1536 * 1024))
        # 3 MiB of changes: the write-ahead log is folded back long before it fills the disk.
        for n in range(400):
            self.assertEqual(self.write_file(spec, '{"num": %d, "pad": "%s"}' % (n + 1, "p" * 8000)), 0, n)
        # Idle, the log is folded back and truncated (on a schedule, not only every 100 pages).
        wal = self.fs.db + "-wal"
        wait_for(lambda: not os.path.exists(wal) or os.path.getsize(wal) == 0, what="the log truncated")
        # Now no room at all: a change is ENOSPC, not EIO, and changes nothing.
        with open(filler, "ab") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError as e:
                self.assertEqual(e.errno, errno.ENOSPC)
        results = [self.write_file(spec, '{"num": %d, "pad": "%s"}' % (1000 + n, "q" * 60000)) for n in range(20)]
        self.assertIn(errno.ENOSPC, results)
        self.assertNotIn(errno.EIO, results)
        self.assertIn("the disk is full", self.acc(u, "error"))
        before = self.acc(u, "spec")
        # Room again: it works at once, without a restart.
        os.unlink(filler)
        self.assertEqual(self.write_file(spec, '{"num": 2000}'), 0)
        self.assertEqual(self.acc(u, "spec"), '{"num": 2000}')
        self.assertNotEqual(before, '{"num": 2000}')
        self.restart()
        self.assertEqual(self.acc(u, "spec"), '{"num": 2000}')

    def test_check_changes_nothing(self):
        db = os.path.join(self.workdir, "new.db")
        r = self.run_bin("--check", "--db", db, "--drivers", "fake", self.fs.mnt + "-unused")
        self.assertEqual(r.returncode, 1)  # no such mountpoint
        os.mkdir(self.fs.mnt + "-unused")
        r = subprocess.run([BIN, "--check", "--db", db, "--drivers", "fake", self.fs.mnt + "-unused"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("does not exist yet: a start creates it", r.stdout)
        self.assertFalse(os.path.exists(db))

    def test_check_is_not_a_config_key(self):
        config = os.path.join(self.workdir, "cyborgfs.conf")
        with open(config, "w") as f:
            f.write("check = true\n")
        r = self.run_bin("--config", config, "--db", os.path.join(self.workdir, "x.db"), self.fs.mnt)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("config file:", r.stderr)


class Ambiguous(Exception):
    """An operation the kill interrupted: it may or may not have been applied."""


def fresh(uuid):
    """What mkdir makes."""
    return {"spec": "{}\n", "name": uuid + "\n", "attach": ""}


class Writer(threading.Thread):
    """Changes its own accelerators at random until the daemon dies, and records
    what was acknowledged.

    `state` maps uuid -> {"spec", "name", "attach"} as acknowledged, or None
    for a removed one; `pending` is the change the kill interrupted, if any, as
    (uuid, file, value), with file "exists" for mkdir (True) and rmdir (False).
    """

    # The fake kernel's control files are regular files that hold one value:
    # two writes to the same one (drivers_probe, a driver's bind) at once would
    # lose one. Writers change their devices one at a time.
    device_lock = threading.Lock()

    def __init__(self, mnt, index, state, owned, killed, api_socket=None):
        super().__init__(daemon=True)
        self.mnt, self.index, self.state, self.owned, self.killed = mnt, index, state, owned, killed
        self.pending = None
        self.failure = None
        self.acknowledged = 0
        # Through the REST API (one keep-alive connection) instead of the files.
        self.conn = UnixHTTPConnection(api_socket) if api_socket else None

    def path(self, *parts):
        return os.path.join(self.mnt, "accelerators", *parts)

    def request(self, method, path, body=None):
        """An HTTP change, acknowledged by a 2xx; a failure raises OSError as a file write does."""
        try:
            r = http_request(self.conn, method, path, body)
        except Exception as e:  # the connection died with the daemon
            raise OSError(errno.ECONNRESET, str(e)) from e
        if r.status // 100 != 2:
            raise OSError(errno.EIO, "%s %s: %r" % (method, path, r))

    def apply(self, uuid, file, value, action):
        try:
            action()
        except OSError as e:
            if self.killed.is_set():
                self.pending = (uuid, file, value)
                raise Ambiguous() from e
            raise AssertionError("%s %s=%r failed before the kill: %s" % (uuid, file, value, e)) from e
        self.acknowledged += 1
        if file == "exists":
            self.state[uuid] = fresh(uuid) if value else None
        else:
            self.state[uuid][file] = value

    def write(self, uuid, file, value):
        """echo VALUE > file (an empty value is written as a newline: it reads back as empty),
        or the REST request that sets the same value."""
        if not self.conn:
            return self.apply(uuid, file, value, lambda: echo_into(self.path(uuid, file), value or "\n"))
        route = "/accelerators/" + uuid
        if file == "spec":
            action = lambda: self.request("PUT", route + "/acc_specs", {"acc_specs": json.loads(value)})  # noqa: E731
        elif file == "name":
            action = lambda: self.request("PUT", route + "/name", {"name": value.strip()})  # noqa: E731
        elif value == "":
            action = lambda: self.request("DELETE", route)  # noqa: E731
        else:
            kind, target = value.split()
            body = {"instance_uuid": target} if kind == "vm" else {"host": target}
            action = lambda: self.request("PUT", route, body)  # noqa: E731
        self.apply(uuid, file, value, action)

    def make(self, u):
        if self.conn:
            self.apply(u, "exists", True, lambda: self.request("POST", "/accelerators/" + u, {"name": u}))
        else:
            self.apply(u, "exists", True, lambda: os.mkdir(self.path(u)))

    def remove(self, u):
        if self.conn:
            self.apply(u, "exists", False, lambda: self.request("DELETE", "/accelerators/%s/record" % u))
        else:
            self.apply(u, "exists", False, lambda: os.rmdir(self.path(u)))

    def step(self, rng):
        mine = [u for u, s in self.state.items() if s is not None]
        choice = rng.random()
        if choice < 0.15 and len(mine) < 12 or not mine:
            self.make(str(uuidlib.UUID(int=rng.getrandbits(128), version=4)))
            return
        u = rng.choice(mine)
        device = u in self.owned
        if choice < 0.25 and not device and self.state[u]["attach"] == "":
            self.remove(u)
        elif choice < 0.5:
            spec = {"num": rng.randint(1, 9)}
            if not device:  # a device's type is what the hardware is
                spec["device_type"] = rng.choice(["GPU", "FPGA", "AICHIP"])
            self.write(u, "spec", json.dumps(spec) + "\n")
        elif choice < 0.65 and not device:
            self.write(u, "name", "w%d-%d\n" % (self.index, rng.getrandbits(48)))
        else:
            value = rng.choice(["vm %s\n" % VM, "host %s\n" % HOST]) if self.state[u]["attach"] == "" else ""
            with self.device_lock if device else contextlib.nullcontext():
                self.write(u, "attach", value)

    def run(self):
        rng = random.Random()
        try:
            while True:
                self.step(rng)
        except Ambiguous:
            pass
        except BaseException as e:  # reported by the test
            self.failure = e
        finally:
            if self.conn:
                self.conn.close()


class CrashTest(KernelTestBase):
    """Writers, kill -9 at a random moment, restart over the dead mount, check; many times."""

    ROUNDS = int(os.environ.get("CYBORGFS_CRASH_ROUNDS", "12"))
    WRITERS = 6
    DEVICES = ["0000:17:00.0", "0000:86:00.0", "0000:af:00.1", "0000:d8:00.0"]

    def test_kill_9_under_load_loses_no_acknowledged_change(self):
        addresses = self.by_address()
        native = {a: self.driver_of(a) for a in self.DEVICES}
        states, owned = [], []
        for i in range(self.WRITERS):  # writer i owns every WRITERS-th device
            mine = [addresses[a] for a in self.DEVICES[i::self.WRITERS]]
            states.append({u: {f: self.acc(u, f) for f in ("spec", "name", "attach")} for u in mine})
            owned.append(set(mine))
        acknowledged = by_http = 0
        for number in range(self.ROUNDS):
            killed = threading.Event()
            writers = [Writer(self.fs.mnt, i, states[i], owned[i], killed, self.fs.api_socket if i % 2 else None)
                       for i in range(self.WRITERS)]
            for w in writers:
                w.start()
            time.sleep(random.uniform(0.2, 1.2))
            killed.set()
            self.fs.crash(clear=False)
            self.fs = self.start(db=self.fs.db)  # over the dead mount
            for w in writers:
                w.join(timeout=30)
                self.assertFalse(w.is_alive(), "a writer still hangs on the dead mount")
                if w.failure:
                    raise w.failure
                acknowledged += w.acknowledged
                by_http += w.acknowledged if w.conn else 0
            for w in writers:
                self.check(w, "round %d, writer %d" % (number, w.index))
            with sqlite3.connect("file:%s?mode=ro" % self.fs.db, uri=True) as db:
                self.assertEqual(db.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
            try:
                wait_for(lambda: self.bindings_agree(addresses, native), timeout=15, what="sysfs bindings")
            except AssertionError:
                self.fail("round %d: sysfs disagrees with the database:\n%s" % (number, self.disagreement(addresses)))
        self.assertGreater(acknowledged - by_http, 10 * self.ROUNDS)
        self.assertGreater(by_http, 10 * self.ROUNDS)
        print("\n%d rounds, %d acknowledged changes (%d over HTTP); %d daemons died stuck on their mount and were ended"
              % (self.ROUNDS, acknowledged, by_http, self.fs.log_text().count("died stuck on its mount")),
              file=sys.stderr)

    def check(self, w, where):
        """Every acknowledged change is there; the interrupted one is all there or not at all.
        Updates w.state to what the daemon now has."""
        present = set(self.uuids())
        for u, acked in list(w.state.items()):
            pending = w.pending[1:] if w.pending and w.pending[0] == u else None
            if pending and pending[0] == "exists":
                w.state[u] = acked = (acked or fresh(u)) if u in present else None
            self.assertEqual(u in present, acked is not None, "%s: %s" % (where, u))
            if acked is None:
                continue
            for file in ("spec", "name", "attach"):
                got = self.acc(u, file)
                allowed = {acked[file]} | ({pending[1]} if pending and pending[0] == file else set())
                if file == "spec":  # as written to the file, or as the API shows a spec it was sent
                    allowed = {json.dumps(json.loads(v), sort_keys=True) for v in allowed}
                    self.assertIn(json.dumps(json.loads(got), sort_keys=True), allowed, "%s: %s spec" % (where, u))
                else:
                    self.assertIn(got, allowed, "%s: %s %s" % (where, u, file))
                acked[file] = got
            self.assert_consistent(u, acked, where)

    def assert_consistent(self, u, values, where):
        """What is derived from a value agrees with it: nothing is half-applied."""
        spec = json.loads(values["spec"])
        if "device_type" in spec:
            self.assertEqual(self.acc(u, "device_type"), spec["device_type"] + "\n", where)
        status = self.acc(u, "status")
        self.assertEqual(status, "attached\n" if values["attach"] else "available\n", where)
        self.assertEqual(os.readlink(self.fs.path("by-name", values["name"].strip())), "../accelerators/" + u, where)

    def driver_of(self, address):
        link = os.path.join(self.tree, "bus/pci/devices", address, "driver")
        return os.path.basename(os.readlink(link)) if os.path.islink(link) else ""

    def disagreement(self, addresses):
        lines = []
        for a in self.DEVICES:
            u = addresses[a]
            with open(os.path.join(self.tree, "bus/pci/devices", a, "driver_override")) as f:
                override = f.read().strip()
            lines.append("%s %s: attach %r, bound to %r, driver_override %r" % (
                a, u, self.acc(u, "attach"), self.driver_of(a), override))
            lines += [line for line in self.fs.log_text().splitlines()[-400:] if u in line or a in line][-8:]
        return "\n".join(lines + self.journal()[-12:])

    def bindings_agree(self, addresses, native):
        """Each device is held by vfio-pci exactly when it is attached to a VM."""
        for a in self.DEVICES:
            want = "vfio-pci" if self.acc(addresses[a], "attach").startswith("vm ") else native[a]
            if self.driver_of(a) != want:
                return False
        return True


if __name__ == "__main__":
    unittest.main()
