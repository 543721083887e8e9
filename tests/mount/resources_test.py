"""Resource bounds: what a client holds or does cannot exhaust the daemon or stall others."""
import errno
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import unittest

from harness import BUILD_DIR, MountTest, clear_mounts, echo_into, is_mounted, wait_for
from pci_test import PciTestBase

HANDLES = 10000


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


class HandlesTest(MountTest):
    def test_ten_thousand_open_handles_and_a_writer_that_never_closes(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, HANDLES + 1000), max(hard, HANDLES + 1000)))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        uuids = [self.make("%08x-0000-4000-8000-000000000000" % n) for n in range(100)]
        before = rss_kib(self.fs.proc.pid)
        handles = []
        try:
            for n in range(HANDLES):
                path = self.fs.path("accelerators", uuids[n % len(uuids)], "spec" if n % 2 else "attach")
                handles.append(os.open(path, os.O_RDWR if n % 3 == 0 else os.O_RDONLY))
            # a writer that starts a document and never finishes nor closes
            stuck = os.open(self.fs.path("accelerators", uuids[0], "spec"), os.O_WRONLY | os.O_TRUNC)
            handles.append(stuck)
            os.write(stuck, b'{"num": ')
            self.assertIn("waiting for the rest", self.acc(uuids[0], "error"))
            # everyone else goes on: another writer's document replaces the unfinished one at once
            self.ok("""echo '{"num": 3}' > accelerators/%s/spec""" % uuids[0])
            self.assertEqual(self.acc(uuids[0], "spec"), '{"num": 3}\n')
            self.assertEqual(self.acc(uuids[0], "error"), "")
            self.ok("echo vm 11111111-2222-4333-8444-555555555555 > accelerators/%s/attach" % uuids[1])
            self.assertEqual(len(self.uuids()), 104)
            grown = rss_kib(self.fs.proc.pid) - before
            self.assertLess(grown, 16 * 1024, "the daemon grew by %d KiB for %d open handles" % (grown, HANDLES))
            # the first open learns ENOSYS; no other open or close reaches the daemon
            self.assertLessEqual(json.loads(self.read("stats"))["open"], 1)
        finally:
            for fd in handles:
                os.close(fd)
        self.assertEqual(self.acc(uuids[0], "spec"), '{"num": 3}\n')


class ScratchBoundTest(MountTest):
    def test_all_scratch_files_together_have_one_bound(self):
        self.restart("--scratch-limit", "2")  # MiB
        gpu, fpga = self.fake_uuid("GPU"), self.fake_uuid("FPGA")
        mib = b"x" * (1 << 20)

        def write(u, name, data):
            return self.write_file(os.path.join("accelerators", u, name), data, flags=os.O_WRONLY | os.O_CREAT)

        self.assertEqual(write(gpu, "tmp1", mib), 0)
        self.assertEqual(write(fpga, "tmp2", mib), 0)  # another folder, the same bound
        self.assertEqual(write(fpga, "tmp3", b"x"), errno.ENOSPC)
        # An unlinked file kept open still holds its bytes.
        held = os.open(self.fs.path("accelerators", gpu, "tmp1"), os.O_RDONLY)
        try:
            os.unlink(self.fs.path("accelerators", gpu, "tmp1"))
            self.assertEqual(write(fpga, "tmp3", b"x"), errno.ENOSPC)
        finally:
            os.close(held)
        # Once the last holder lets go, the kernel forgets it and its bytes are free.
        wait_for(lambda: write(fpga, "tmp3", b"x") == 0, what="the freed bytes")


# Maps stall_fs's file privately and lists FOLDER into that mapping: the copy
# faults on a page stall_fs never reads, so getdents64 holds FOLDER's lock.
HOLDER = r"""
import ctypes, mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
pages = mmap.mmap(fd, 1 << 20, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
folder = os.open(sys.argv[2], os.O_RDONLY | os.O_DIRECTORY)
libc = ctypes.CDLL(None)
libc.syscall.restype = ctypes.c_long
print("holding", flush=True)
libc.syscall(217, folder, ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(pages))), 65536)
"""


def lane_helpers_of(pid):
    """The pids of the entry-lane helpers daemon `pid` started, alive or stuck."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if len(args) > 3 and args[1] == b"--internal-entry-lane" and args[3] == str(pid).encode():
            found.append(int(entry))
    return found


class StuckReaderTest(MountTest):
    """An unprivileged reader that holds a folder's lock for as long as it likes
    (tests/tools/stall_fs.cc) holds up only that folder's names."""

    def setUp(self):
        super().setUp()
        os.chmod(self.workdir, 0o755)  # mkdtemp's 0700 would keep the reader (nobody) out

    def hold(self, folder):
        """Starts a reader, as nobody, that holds `folder`'s lock until release()."""
        mnt = os.path.join(self.workdir, "stall-%d" % len(os.listdir(self.workdir)))
        os.mkdir(mnt)
        stall = subprocess.Popen([os.path.join(BUILD_DIR, "stall_fs"), mnt], stdout=subprocess.PIPE)
        self.addCleanup(self.stop_stall_fs, stall, mnt)
        self.assertEqual(stall.stdout.readline(), b"ready\n")  # mounted
        reader = subprocess.Popen(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                                   "/usr/bin/python3", "-c", HOLDER, os.path.join(mnt, "f"), self.fs.path(folder)],
                                  stdout=subprocess.PIPE)
        holder = (stall, reader, mnt)
        self.addCleanup(self.release, holder)
        self.assertEqual(reader.stdout.readline(), b"holding\n")

        def in_getdents():
            with open("/proc/%d/syscall" % reader.pid) as f:
                return f.read().startswith("217 ")
        wait_for(in_getdents, what="the reader stuck in getdents64")
        return holder

    @staticmethod
    def stop_stall_fs(stall, mnt):
        if stall.poll() is None:
            stall.terminate()
            stall.wait(timeout=10)
        clear_mounts(mnt)
        stall.stdout.close()

    def release(self, holder):
        """Ends stall_fs: the reader's page fault fails, and it lets go of the lock."""
        stall, reader, mnt = holder
        self.stop_stall_fs(stall, mnt)
        reader.wait(timeout=10)
        if not reader.stdout.closed:
            reader.stdout.close()

    def test_a_held_folder_holds_up_neither_other_writes_nor_other_folders(self):
        gpu, fpga = self.fake_uuid("GPU"), self.fake_uuid("FPGA")
        created = "3a7e1a52-8e41-4c1d-9f36-4e0d5a4b8c21"
        # Looked up while absent: the kernel keeps these as absent until told.
        self.assertFalse(os.path.exists(self.fs.path("accelerators", created)))
        self.assertFalse(os.path.lexists(self.fs.path("by-name", "renamed")))
        holder = self.hold("by-name")
        # by-name/ cannot be told of the rename now; the write returns all the same.
        echo_into(self.fs.path("accelerators", gpu, "name"), "renamed\n")
        waits = self.fs.log_text().count("still pending")
        for n in range(20):  # writes that change no name do not wait for the lane
            echo_into(self.fs.path("accelerators", fpga, "spec"), '{"num": %d}' % (n + 1))
        self.assertEqual(self.fs.log_text().count("still pending"), waits)
        self.assertEqual(self.acc(fpga, "spec"), '{"num": 20}')
        # accelerators/ is another lane: a new accelerator is there at once
        echo_into(self.fs.path("create"), '{"name": "made-while-held", "uuid": "%s"}' % created)
        self.assertTrue(os.path.isdir(self.fs.path("accelerators", created)))
        # let go: what by-name/ could not be told is told now
        self.release(holder)
        wait_for(lambda: os.path.lexists(self.fs.path("by-name", "renamed")), what="by-name/renamed")
        self.assertEqual(os.readlink(self.fs.path("by-name", "renamed")), "../accelerators/" + gpu)
        self.assertEqual(os.readlink(self.fs.path("by-name", "made-while-held")), "../accelerators/" + created)

    def test_a_name_that_appears_in_a_held_folder_is_there_once_it_is_let_go(self):
        created = "3a7e1a52-8e41-4c1d-9f36-4e0d5a4b8c21"
        self.assertFalse(os.path.exists(self.fs.path("accelerators", created)))
        holder = self.hold("accelerators")
        echo_into(self.fs.path("create"), '{"name": "made-while-held", "uuid": "%s"}' % created)
        self.release(holder)
        wait_for(lambda: os.path.isdir(self.fs.path("accelerators", created)), what="the created accelerator")

    def test_the_daemon_stops_while_a_reader_holds_a_folder(self):
        holder = self.hold("by-name")
        echo_into(self.fs.path("accelerators", self.fake_uuid("GPU"), "name"), "renamed\n")  # its lane is stuck
        helpers = lane_helpers_of(self.fs.proc.pid)
        self.fs.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.fs.proc.wait(timeout=20), 0)
        self.assertFalse(is_mounted(self.fs.mnt))
        self.release(holder)  # the stuck helper, killed, dies once the kernel lets it go
        wait_for(lambda: not any(os.path.exists("/proc/%d" % pid) for pid in helpers), what="the helpers to end")


class SlowDriverTest(PciTestBase):
    """The pci driver on a tree no fake kernel answers: an attach waits for a driver
    link that never comes (2 s a step), then fails with EIO."""

    def test_a_slow_driver_blocks_neither_reads_nor_changes_of_other_accelerators(self):
        found = self.by_address()
        slow, other = found["0000:17:00.0"], found["0000:86:00.0"]
        outcome = {}

        def attach():
            outcome["attach"] = self.write_file("accelerators/%s/attach" % slow,
                                                "vm 11111111-2222-4333-8444-555555555555\n")
        thread = threading.Thread(target=attach)
        thread.start()
        try:
            self.assertEqual(self.acc(slow, "status"), "available\n")  # its own state too
            for u in found.values():
                self.assertTrue(self.acc(u, "name"))
            self.assertEqual(self.write_file("accelerators/%s/spec" % other, '{"num": 2}\n'), 0)
            self.assertEqual(self.write_file("accelerators/%s/name" % other, "renamed\n"), 0)
            self.assertIn("renamed", os.listdir(self.fs.path("by-name")))
            self.assertTrue(thread.is_alive(), "the slow attach ended before the others' requests")
        finally:
            thread.join(timeout=60)
        self.assertEqual(outcome["attach"], errno.EIO)  # rolled back
        self.assertEqual(self.acc(other, "spec"), '{"num": 2}\n')


    def test_sigterm_lets_the_request_in_flight_finish(self):
        slow = self.by_address()["0000:17:00.0"]
        unbind = os.path.join(self.tree, "bus/pci/drivers/nvidia/unbind")
        outcome = {}
        thread = threading.Thread(target=lambda: outcome.update(attach=self.write_file(
            "accelerators/%s/attach" % slow, "vm 11111111-2222-4333-8444-555555555555\n")))
        thread.start()
        wait_for(lambda: os.path.getsize(unbind) > 0, what="the attach to be in the driver")
        self.fs.proc.send_signal(signal.SIGTERM)
        thread.join(timeout=60)
        self.assertEqual(outcome["attach"], errno.EIO)  # the driver's answer, not ECONNABORTED
        self.assertEqual(self.fs.proc.wait(timeout=30), 0)
        self.assertFalse(is_mounted(self.fs.mnt))
        self.fs = self.start(db=self.fs.db)
        self.assertEqual(self.acc(slow, "status"), "available\n")  # rolled back, not half done


if __name__ == "__main__":
    unittest.main()
