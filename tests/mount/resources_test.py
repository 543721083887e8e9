"""Resource bounds: what a client holds or does cannot exhaust the daemon or stall others."""
import errno
import json
import os
import resource
import signal
import threading
import unittest

from harness import MountTest, is_mounted, wait_for
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
