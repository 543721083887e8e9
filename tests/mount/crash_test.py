"""kill -9 of the daemon: what was acknowledged survives, the dead mount is replaced.

The crash test runs writer threads against the pci driver on a fake sysfs tree
(answered by tests/sysfs/fake_kernel.py), kills the daemon at random moments,
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

from harness import BIN, HOST, MountTest, echo_into, is_mounted, is_served, wait_for
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

    def __init__(self, mnt, index, state, owned, killed):
        super().__init__(daemon=True)
        self.mnt, self.index, self.state, self.owned, self.killed = mnt, index, state, owned, killed
        self.pending = None
        self.failure = None
        self.acknowledged = 0

    def path(self, *parts):
        return os.path.join(self.mnt, "accelerators", *parts)

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
        """echo VALUE > file; an empty value is written as a newline (reads back as empty)."""
        self.apply(uuid, file, value, lambda: echo_into(self.path(uuid, file), value or "\n"))

    def step(self, rng):
        mine = [u for u, s in self.state.items() if s is not None]
        choice = rng.random()
        if choice < 0.15 and len(mine) < 12 or not mine:
            u = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
            self.apply(u, "exists", True, lambda: os.mkdir(self.path(u)))
            return
        u = rng.choice(mine)
        device = u in self.owned
        if choice < 0.25 and not device and self.state[u]["attach"] == "":
            self.apply(u, "exists", False, lambda: os.rmdir(self.path(u)))
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
        acknowledged = 0
        for number in range(self.ROUNDS):
            killed = threading.Event()
            writers = [Writer(self.fs.mnt, i, states[i], owned[i], killed) for i in range(self.WRITERS)]
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
            for w in writers:
                self.check(w, "round %d, writer %d" % (number, w.index))
            with sqlite3.connect("file:%s?mode=ro" % self.fs.db, uri=True) as db:
                self.assertEqual(db.execute("PRAGMA integrity_check").fetchall(), [("ok",)])
            try:
                wait_for(lambda: self.bindings_agree(addresses, native), timeout=15, what="sysfs bindings")
            except AssertionError:
                self.fail("round %d: sysfs disagrees with the database:\n%s" % (number, self.disagreement(addresses)))
        self.assertGreater(acknowledged, 10 * self.ROUNDS)
        print("\n%d rounds, %d acknowledged changes; %d daemons died stuck on their mount and were ended"
              % (self.ROUNDS, acknowledged, self.fs.log_text().count("died stuck on its mount")), file=sys.stderr)

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
