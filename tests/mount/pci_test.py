"""The pci driver on sysfs trees built by tests/sysfs/fake_sysfs.py, through the real mount."""
import json
import os
import signal
import subprocess
import sys
import unittest
import uuid as uuidlib

from harness import BUILD_DIR, HOST, MountTest, metric, parse_metrics, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sysfs"))
import fake_sysfs  # noqa: E402

# address -> (device_type, vendor_id, product_id, kernel driver, numa_node, iommu_group, physfn)
EXPECTED = {
    "0000:17:00.0": ("GPU", "10de", "2330", "nvidia", "0", "17", ""),
    "0000:3b:00.0": ("GPU", "10de", "20b0", "nvidia", "0", "20", ""),
    "0000:3b:00.4": ("GPU", "10de", "20b0", "nvidia", "0", "21", "0000:3b:00.0"),
    "0000:3b:00.5": ("GPU", "10de", "20b0", "nvidia", "0", "22", "0000:3b:00.0"),
    "0000:5e:00.0": ("CRYPTO", "8086", "37c8", "c6xx", "0", "30", ""),
    "0000:5e:01.0": ("CRYPTO", "8086", "37c9", "c6xxvf", "0", "31", "0000:5e:00.0"),
    "0000:5e:01.1": ("CRYPTO", "8086", "37c9", "c6xxvf", "0", "32", "0000:5e:00.0"),
    "0000:86:00.0": ("FPGA", "8086", "09c4", "dfl-pci", "1", "40", ""),
    "0000:af:00.1": ("FPGA", "10ee", "5005", "xclmgmt", "1", "41", ""),
    "0000:d8:00.0": ("GPU", "10de", "1eb8", "nvidia", "1", "50", ""),
}


class PciTree:
    """For a MountTest: its daemons have the pci driver on a fresh standard tree (self.tree);
    with `fake_kernel`, tests/sysfs/fake_kernel.py answers the tree's control files
    (self.kernel), from before the first daemon until teardown (even if a test paused it)."""

    fake_devices = 0
    fake_kernel = False

    def setUp(self):
        self.tree = None
        super().setUp()

    def start(self, *args, **kwargs):
        if self.tree is None:  # beside the database, removed with the work folder
            self.tree = fake_sysfs.build(os.path.join(self.workdir, "sys"))
            if self.fake_kernel:
                self.kernel = fake_sysfs.start_kernel(self.tree)
                self.addCleanup(self.stop_kernel)
        if "--drivers" not in args:
            args = ("--drivers", "pci", "--sysfs-root", self.tree, *args)
        return super().start(*args, **kwargs)

    def stop_kernel(self):
        self.kernel.send_signal(signal.SIGCONT)  # a test may have paused it
        self.kernel.terminate()
        self.kernel.wait()


class PciTestBase(PciTree, MountTest):
    """A daemon with the pci driver on a fresh standard tree (self.tree)."""

    def by_address(self):
        """address -> uuid, from the by-name links (pci names are <type>-<address>)."""
        found = {}
        for u in self.uuids():
            if self.acc(u, "reported_by") == "pci\n":
                found[self.acc(u, "name").strip().split("-", 1)[1]] = u
        return found

    def by_address_all(self):
        return {self.acc(u, "name").strip().split("-", 1)[1]: u for u in self.uuids()}


class DiscoveryTest(PciTestBase):
    def test_lists_exactly_the_accelerators_of_the_tree(self):
        found = self.by_address()
        self.assertEqual(sorted(found), sorted(EXPECTED))
        for address, (kind, vendor, product, driver, numa, group, physfn) in EXPECTED.items():
            u = found[address]
            facts = [self.acc(u, f) for f in ["device_type", "vendor_id", "product_id", "driver", "numa_node",
                                                "iommu_group", "physfn", "status"]]
            self.assertEqual(facts, [kind + "\n", vendor + "\n", product + "\n", driver + "\n", numa + "\n",
                                     group + "\n", physfn + "\n" if physfn else "", "available\n"], address)
        self.assertEqual(self.acc(found["0000:3b:00.0"], "virtfns"), "0000:3b:00.4\n0000:3b:00.5\n")
        self.assertEqual(self.acc(found["0000:5e:00.0"], "virtfns"), "0000:5e:01.0\n0000:5e:01.1\n")
        self.assertEqual(self.acc(found["0000:3b:00.4"], "virtfns"), "")
        self.assertEqual([self.acc(found["0000:5e:00.0"], f) for f in ["sriov_totalvfs", "sriov_numvfs"]],
                         ["2\n", "2\n"])
        self.assertEqual(self.acc(found["0000:17:00.0"], "sriov_totalvfs"), "")
        self.assertEqual(self.acc(found["0000:17:00.0"], "subsystem_id"), "10de:16c1\n")
        self.assertEqual(self.acc(found["0000:86:00.0"], "subsystem_id"), "")
        self.assertIn("H100", self.acc(found["0000:17:00.0"], "model"))
        self.assertTrue(self.acc(found["0000:17:00.0"], "model").startswith("NVIDIA Corporation"))
        self.assertIn("C62x", self.acc(found["0000:5e:00.0"], "model"))
        self.assertEqual(self.acc(found["0000:5e:00.0"], "acc_type"), "intel-qat-c62x\n")
        self.assertEqual(self.acc(found["0000:17:00.0"], "acc_type"), "pci-10de-2330\n")
        # What was scanned, and at debug why each other device was skipped.
        log = self.fs.log_text()
        self.assertIn("info pci: 13 PCI devices under %s/bus/pci/devices, 10 of them accelerators" % self.tree, log)
        self.assertIn("pci: 0000:18:00.0 is not taken: 8086:1572, class 0x020000: not an accelerator class", log)

    def test_uuids_are_derived_from_host_and_address_and_survive_a_database_rebuild(self):
        first = self.by_address()
        self.restart()
        self.assertEqual(self.by_address(), first)
        self.fs.stop()
        os.unlink(self.fs.db)
        self.fs = self.start(db=self.fs.db)
        self.assertEqual(self.by_address(), first)
        self.assertEqual(len(set(first.values())), len(first))
        for address, u in first.items():
            self.assertEqual(uuidlib.UUID(u).version, 5, address)

    def test_a_removed_device_goes_offline_with_its_record_and_comes_back(self):
        gpu = self.by_address()["0000:17:00.0"]
        self.ok("""echo '{"num": 1}' > accelerators/%s/spec""" % gpu)
        fake_sysfs.remove_device(self.tree, "0000:17:00.0")
        self.restart()
        self.assertEqual(self.acc(gpu, "status"), "offline\n")
        self.assertEqual(self.acc(gpu, "spec"), '{"num": 1}\n')
        fake_sysfs.restore_device(self.tree, "0000:17:00.0")
        self.restart()
        self.assertEqual(self.acc(gpu, "status"), "available\n")
        self.assertEqual(self.acc(gpu, "spec"), '{"num": 1}\n')

    def test_the_device_table_file_extends_and_overrides_the_built_in_one(self):
        table = os.path.join(self.workdir, "devices.conf")
        with open(table, "w") as f:
            f.write("# a SmartNIC we offload to, and a GPU we keep for the host\n"
                    "8086:1572 ACCELERATOR intel-x710-offload\n10de:1eb8 ignore\n")
        self.fs.stop()
        self.fs = self.start("--drivers", "pci", "--sysfs-root", self.tree, "--device-table", table, db=self.fs.db)
        found = self.by_address()
        self.assertIn("0000:18:00.0", found)
        self.assertEqual(self.acc(found["0000:18:00.0"], "acc_type"), "intel-x710-offload\n")
        self.assertEqual(self.acc(self.by_address_all()["0000:d8:00.0"], "status"), "offline\n")

    def test_the_drivers_file_reports_each_drivers_state(self):
        report = json.loads(self.read("drivers"))
        self.assertEqual(report["pci"]["state"], "ok")
        self.assertEqual(report["pci"]["devices"], len(EXPECTED))
        self.assertEqual(report["pci"]["problems"], [])
        self.fails("echo x > drivers", "Permission denied")
        import shutil
        shutil.rmtree(os.path.join(self.tree, "bus/pci/drivers/vfio-pci"))
        self.ok("echo 1 > rescan")
        report = json.loads(self.read("drivers"))
        self.assertEqual(report["pci"]["state"], "degraded")
        self.assertIn("vfio-pci is not loaded", report["pci"]["problems"][0])

    def test_a_missing_sysfs_root_leaves_the_daemon_up_and_pci_devices_offline(self):
        before = self.by_address()
        self.fs.stop()
        self.fs = self.start("--drivers", "pci", "--sysfs-root", os.path.join(self.workdir, "nothing"),
                             db=self.fs.db)
        for u in before.values():
            self.assertEqual(self.acc(u, "status"), "offline\n")
        self.assertIn("discovery failed", self.fs.log_text())
        report = json.loads(self.read("drivers"))
        self.assertEqual(report["pci"]["state"], "failed")
        self.assertIn("not a sysfs tree", report["pci"]["problems"][0])

    def test_a_failing_driver_leaves_the_others_working(self):
        self.fs.stop()
        self.fs = self.start("--drivers", "pci,fake", "--sysfs-root", os.path.join(self.workdir, "nothing"),
                             db=self.fs.db, fake_devices=2)
        fake = [u for u in self.uuids() if self.acc(u, "reported_by") == "fake\n"]
        self.assertEqual(len(fake), 2)
        for u in fake:
            self.assertEqual(self.acc(u, "status"), "available\n")
        self.ok("echo vm 11111111-2222-4333-8444-555555555555 > accelerators/%s/attach" % fake[0])
        report = json.loads(self.read("drivers"))
        self.assertEqual((report["pci"]["state"], report["fake"]["state"]), ("failed", "ok"))


class KernelTestBase(PciTestBase):
    """Also tests/sysfs/fake_kernel.py, answering the control-file writes for the kernel."""

    VM = "11111111-2222-4333-8444-555555555555"
    fake_kernel = True

    def setUp(self):
        super().setUp()
        self.gpu = self.by_address()["0000:17:00.0"]
        self.dev = os.path.join(self.tree, "bus/pci/devices/0000:17:00.0")

    def journal(self):
        try:
            with open(os.path.join(self.tree, ".journal")) as f:
                return [line.rstrip("\n") for line in f]
        except FileNotFoundError:
            return []

    def bound(self):
        link = os.path.join(self.dev, "driver")
        return os.path.basename(os.readlink(link)) if os.path.islink(link) else ""



class PciAttachTest(KernelTestBase):
    def assert_given_back_to_nvidia(self):
        """The three writes after the VM attach's three hand the GPU back to its native driver."""
        self.assertEqual(self.journal()[3:], [
            "bus/pci/drivers/vfio-pci/unbind 0000:17:00.0",
            "bus/pci/devices/0000:17:00.0/driver_override ",
            "bus/pci/drivers/nvidia/bind 0000:17:00.0"])
        self.assertEqual(self.bound(), "nvidia")

    def test_vm_attach_binds_vfio_pci_and_detach_restores_the_native_driver(self):
        self.ok("echo vm %s > accelerators/%s/attach" % (self.VM, self.gpu))
        self.assertEqual(self.journal(), [
            "bus/pci/drivers/nvidia/unbind 0000:17:00.0",
            "bus/pci/devices/0000:17:00.0/driver_override vfio-pci",
            "bus/pci/drivers_probe 0000:17:00.0"])
        self.assertEqual(self.bound(), "vfio-pci")
        self.assertEqual(json.loads(self.acc(self.gpu, "attach_handle")),
                         {"type": "PCI", "address": "0000:17:00.0", "iommu_group": 17})
        self.assertEqual(self.acc(self.gpu, "driver"), "vfio-pci\n")
        self.assertEqual(self.acc(self.gpu, "status"), "attached\n")
        self.ok("echo > accelerators/%s/attach" % self.gpu)
        self.assert_given_back_to_nvidia()
        self.assertEqual(self.acc(self.gpu, "driver"), "nvidia\n")
        self.assertEqual(self.acc(self.gpu, "attach_handle"), "")

    def test_host_attach_keeps_the_native_driver_and_must_name_this_host(self):
        self.ok("echo host %s > accelerators/%s/attach" % (HOST, self.gpu))
        self.assertEqual(self.journal(), [])
        self.assertEqual(json.loads(self.acc(self.gpu, "attach_handle")),
                         {"type": "HOST", "address": "0000:17:00.0", "driver": "nvidia"})
        self.ok("echo > accelerators/%s/attach" % self.gpu)
        self.fails("echo host elsewhere > accelerators/%s/attach" % self.gpu, "Invalid argument")
        self.assertIn("can only attach to this host", self.acc(self.gpu, "error"))

    def test_a_probe_that_binds_nothing_is_rolled_back_with_eio(self):
        with open(os.path.join(self.tree, ".fail"), "w") as f:
            f.write("probe 0000:17:00.0\n")
        self.fails("echo vm %s > accelerators/%s/attach" % (self.VM, self.gpu), "Input/output error")
        wait_for(lambda: len(self.journal()) == 6, what="the undo writes")  # not waited for by the driver
        error = self.acc(self.gpu, "error")
        self.assertIn("drivers_probe failed: drivers_probe bound nothing", error)
        self.assertIn("rolled back", error)
        self.assert_given_back_to_nvidia()
        self.assertEqual(self.acc(self.gpu, "status"), "available\n")
        self.assertEqual(self.acc(self.gpu, "attach"), "")

    def test_an_unbind_that_fails_leaves_everything_as_it_was(self):
        with open(os.path.join(self.tree, ".fail"), "w") as f:
            f.write("unbind nvidia 0000:17:00.0\n")
        self.fails("echo vm %s > accelerators/%s/attach" % (self.VM, self.gpu), "Input/output error")
        self.assertIn("unbind from nvidia failed: the device is still bound to nvidia", self.acc(self.gpu, "error"))
        wait_for(lambda: len(self.journal()) == 2, what="the undo write")
        self.assertEqual(self.journal(), ["bus/pci/drivers/nvidia/unbind 0000:17:00.0",
                                          "bus/pci/drivers/nvidia/bind 0000:17:00.0"])
        self.assertEqual(self.bound(), "nvidia")
        self.assertEqual(self.acc(self.gpu, "status"), "available\n")

    def test_a_driver_failure_over_http_is_500_with_its_message(self):
        with open(os.path.join(self.tree, ".fail"), "w") as f:
            f.write("unbind nvidia 0000:17:00.0\n")
        r = self.api("PUT", "/accelerators/" + self.gpu, {"instance_uuid": self.VM})
        self.assertEqual(r.status, 500)
        self.assertIn("unbind from nvidia failed: the device is still bound to nvidia", r.error())
        self.assertEqual(r.error() + "\n", self.acc(self.gpu, "error"))  # the error file's words
        self.assertEqual(self.acc(self.gpu, "status"), "available\n")

    def test_detach_falls_back_to_drivers_probe_when_bind_is_refused(self):
        self.ok("echo vm %s > accelerators/%s/attach" % (self.VM, self.gpu))
        with open(os.path.join(self.tree, ".fail"), "w") as f:
            f.write("bind nvidia 0000:17:00.0\n")
        self.ok("echo > accelerators/%s/attach" % self.gpu)
        self.assertEqual(self.journal()[3:], [
            "bus/pci/drivers/vfio-pci/unbind 0000:17:00.0",
            "bus/pci/devices/0000:17:00.0/driver_override ",
            "bus/pci/drivers/nvidia/bind 0000:17:00.0",
            "bus/pci/drivers_probe 0000:17:00.0"])
        self.assertEqual(self.bound(), "nvidia")

    def test_the_native_driver_is_remembered_in_the_database(self):
        self.ok("echo vm %s > accelerators/%s/attach" % (self.VM, self.gpu))
        self.restart()
        self.assertEqual(self.acc(self.gpu, "status"), "attached\n")
        self.assertEqual(self.bound(), "vfio-pci")
        self.ok("echo > accelerators/%s/attach" % self.gpu)
        self.assertEqual(self.bound(), "nvidia")


class RescanTest(KernelTestBase):
    def test_writing_1_to_rescan_applies_removals_returns_and_new_devices(self):
        self.ok("echo vm %s > accelerators/%s/attach" % (self.VM, self.gpu))
        fake_sysfs.remove_device(self.tree, "0000:17:00.0")
        self.ok("echo 1 > rescan")
        self.assertEqual(self.acc(self.gpu, "status"), "offline\n")
        self.assertEqual(self.acc(self.gpu, "attach"), "vm %s\n" % self.VM)
        fake_sysfs.restore_device(self.tree, "0000:17:00.0")
        fake_sysfs.add_device(self.tree, fake_sysfs.Device("0000:e3:00.0", 0x1e52, 0x0100, 0x120000, "", 1, 70))
        self.ok("printf 1 > rescan")
        self.assertEqual(self.acc(self.gpu, "status"), "attached\n")
        self.assertEqual(self.bound(), "vfio-pci")
        new = self.by_address()["0000:e3:00.0"]
        self.assertEqual(self.acc(new, "device_type"), "ACCELERATOR\n")
        self.assertEqual(self.acc(new, "driver"), "")

    def test_rescan_takes_only_1(self):
        for bad in ["0", "yes", "1 1"]:
            self.fails("echo %s > rescan" % bad, "Invalid argument")
        self.assertEqual(self.ok("cat rescan"), "")  # write-only: reads as empty
        self.assertIn("write 1 to rescan", self.fs.log_text())

    def test_periodic_rescans(self):
        self.fs.stop()
        self.fs = self.start("--rescan-interval", "1", db=self.fs.db)
        fake_sysfs.remove_device(self.tree, "0000:86:00.0")
        fpga = self.by_address_all()["0000:86:00.0"]
        wait_for(lambda: self.acc(fpga, "status") == "offline\n", timeout=10, what="a periodic rescan")
        # The daemon's own change, audited as such.
        self.assertIn('uid=- pid=- command="cyborgfs" accelerator="%s" file="status" old="available\\n" '
                      'new="offline\\n"' % fpga, self.fs.log_text())

    def test_a_failed_detach_is_retried_by_rescans_and_never_undone(self):
        self.ok("echo vm %s > accelerators/%s/attach" % (self.VM, self.gpu))
        with open(os.path.join(self.tree, ".fail"), "w") as f:
            f.write("unbind vfio-pci 0000:17:00.0\n")
        self.fails("echo > accelerators/%s/attach" % self.gpu, "Input/output error")
        self.assertEqual(self.acc(self.gpu, "status"), "error\n")
        self.ok("echo 1 > rescan")  # the kernel still refuses: still error, the device still held
        self.assertEqual(self.acc(self.gpu, "status"), "error\n")
        self.assertEqual(self.acc(self.gpu, "attach"), "vm %s\n" % self.VM)
        self.assertEqual(self.bound(), "vfio-pci")
        os.unlink(os.path.join(self.tree, ".fail"))
        self.ok("echo 1 > rescan")  # the detach the user asked for, done at last
        self.assertEqual(self.acc(self.gpu, "status"), "available\n")
        self.assertEqual(self.acc(self.gpu, "attach"), "")
        self.assertEqual(self.acc(self.gpu, "attach_handle"), "")
        self.assertEqual(self.bound(), "nvidia")
        self.assertIn('accelerator="%s" file="attach" old="vm %s\\n" new=""' % (self.gpu, self.VM),
                      self.fs.log_text())

    def test_a_crash_in_the_middle_of_an_attach_is_repaired_at_start(self):
        # The state an attach leaves after unbind, driver_override and probe, had the
        # daemon died before its database commit: held by vfio-pci, detached in SQLite.
        self.fs.stop()
        os.unlink(os.path.join(self.dev, "driver"))
        with open(os.path.join(self.dev, "driver_override"), "w") as f:
            f.write("vfio-pci\n")
        os.symlink("../../../bus/pci/drivers/vfio-pci", os.path.join(self.dev, "driver"))
        self.fs = self.start(db=self.fs.db)
        self.assertEqual(self.acc(self.gpu, "status"), "available\n")
        wait_for(lambda: self.bound() == "nvidia", what="the native driver")
        with open(os.path.join(self.dev, "driver_override")) as f:
            self.assertEqual(f.read(), "\n")
        # The repair is the daemon's own change, audited as such (the kernel picks
        # the driver after drivers_probe, asynchronously: the line says what it saw).
        self.assertIn('uid=- pid=- command="cyborgfs" accelerator="%s" file="driver" old="vfio-pci\\n" '
                      % self.gpu, self.fs.log_text())


    def test_a_crash_between_unbind_and_driver_override_is_repaired_at_start(self):
        # An attach's first step done (unbound from nvidia), the daemon dead before the next.
        self.ok("echo vm %s > accelerators/%s/attach" % (self.VM, self.gpu))
        self.ok("echo > accelerators/%s/attach" % self.gpu)  # nvidia is now remembered as its own driver
        self.fs.stop()
        os.unlink(os.path.join(self.dev, "driver"))
        self.fs = self.start(db=self.fs.db)
        self.assertEqual(self.acc(self.gpu, "status"), "available\n")
        wait_for(lambda: self.bound() == "nvidia", what="the native driver")


class HealthTest(KernelTestBase):
    """Each signal of tests/sysfs, flipped and back, moves `health` at the next rescan."""

    def health(self, u=None):
        return self.acc(u or self.gpu, "health")

    def record(self, u=None):
        return self.api("GET", "/accelerators/" + (u or self.gpu)).json()

    def rescan(self):
        self.ok("echo 1 > rescan")

    def test_every_device_of_the_tree_starts_ok(self):
        for address, u in self.by_address().items():
            self.assertEqual(self.health(u), "ok\n", address)
            self.assertEqual((self.record(u)["health"], self.record(u)["health_reasons"]), ("ok", []))
            self.assertEqual(self.record(u)["aer_fatal"], 0)

    def test_aer_errors_since_the_last_rescan_degrade_or_fail_then_recover(self):
        for severity, state in [("correctable", "degraded"), ("nonfatal", "degraded"), ("fatal", "failed")]:
            path = os.path.join(self.dev, "aer_dev_" + severity)
            with open(path, "w") as f:
                f.write(fake_sysfs.aer_text(severity, 3))
            self.rescan()
            self.assertEqual(self.health(), "%s\npcie aer: 3 %s errors since the last rescan\n" % (state, severity))
            record = self.record()
            self.assertEqual((record["health"], record["aer_" + severity]), (state, 3))
            samples = parse_metrics(self.api("GET", "/metrics").body.decode())  # the metrics follow
            self.assertEqual(metric(samples, "cyborgfs_pcie_aer_errors_total", UUID=self.gpu, severity=severity), 3)
            self.assertEqual(metric(samples, "cyborgfs_accelerator_health", UUID=self.gpu, health=state), 1)
            self.rescan()  # no new ones: counted since boot, but not since the last rescan
            self.assertEqual(self.health(), "ok\n", severity)
            self.assertEqual(self.record()["aer_" + severity], 3)

    def test_power_link_and_qat_state_move_health_and_back(self):
        qat = self.by_address()["0000:5e:00.0"]
        cases = [
            (self.gpu, "power_state", "error", "D0", "failed\npower state error\n"),
            (self.gpu, "current_link_speed", "8.0 GT/s PCIe", "16.0 GT/s PCIe",
             "degraded\npcie link at 8 GT/s x16, capable of 16 GT/s x16\n"),
            (self.gpu, "current_link_width", "8", "16", "degraded\npcie link at 16 GT/s x8, capable of 16 GT/s x16\n"),
            (qat, "qat/state", "down", "up", "failed\nqat state down\n"),
        ]
        for u, name, bad, good, said in cases:
            address = [a for a, v in self.by_address().items() if v == u][0]
            fake_sysfs.signal(self.tree, address, name, bad)
            self.rescan()
            self.assertEqual(self.health(u), said, name)
            fake_sysfs.signal(self.tree, address, name, good)
            self.rescan()
            self.assertEqual(self.health(u), "ok\n", name)

    def test_a_watcher_of_health_wakes_when_a_rescan_finds_a_change(self):
        w = self.watcher(self.fs.path("accelerators", self.gpu, "health"), idle=5)
        fake_sysfs.signal(self.tree, "0000:17:00.0", "power_state", "error")
        self.rescan()
        self.assertEqual(w.stdout.readline().strip(), "woken failed")
        self.assertEqual(w.stdout.readline().strip(), "power state error")  # the rest of what it read

    def test_a_signal_that_cannot_be_read_is_unknown_never_failed(self):
        path = os.path.join(self.dev, "aer_dev_fatal")
        with open(path, "w") as f:
            f.write("garbage\n")
        self.rescan()
        self.assertEqual(self.health(), "unknown\naer_dev_fatal has no TOTAL_ERR_ line\n")
        for _ in range(3):  # stays unknown: never failed by itself
            self.rescan()
            self.assertEqual(self.health().split("\n")[0], "unknown")
        fake_sysfs.signal(self.tree, "0000:17:00.0", "power_state", "unknown")
        self.rescan()
        self.assertEqual(self.health(), "unknown\naer_dev_fatal has no TOTAL_ERR_ line\npower state unknown\n")
        with open(path, "w") as f:
            f.write(fake_sysfs.aer_text("fatal", 0))
        fake_sysfs.signal(self.tree, "0000:17:00.0", "power_state", "D0")
        self.rescan()
        self.assertEqual(self.health(), "ok\n")
        os.unlink(path)  # a signal the device does not have is not judged
        self.rescan()
        self.assertEqual(self.health(), "ok\n")

    def test_attached_a_device_powered_off_or_bound_elsewhere_is_judged_against_its_record(self):
        self.ok("echo vm %s > accelerators/%s/attach" % (self.VM, self.gpu))
        self.assertEqual(self.health(), "ok\n")
        fake_sysfs.signal(self.tree, "0000:17:00.0", "power_state", "D3cold")
        self.rescan()
        self.assertEqual(self.health(), "degraded\npower state D3cold while attached\n")
        fake_sysfs.signal(self.tree, "0000:17:00.0", "power_state", "D0")
        self.stop_kernel()  # nothing answers: the rescan cannot put it back on vfio-pci
        fake_sysfs.link(os.path.join(self.dev, "driver"), "../../../bus/pci/drivers/nvidia")
        self.ok("echo 1 > rescan")
        self.assertIn("failed\nbound to nvidia, not as its attachment to vm %s needs\n" % self.VM, self.health())


def real_pci_device():
    """A PCI device of this machine's own sysfs, whose uevent file takes a synthetic event."""
    try:
        devices = sorted(os.listdir("/sys/bus/pci/devices"))
    except OSError:
        return None
    for d in devices:
        if os.access(os.path.join("/sys/bus/pci/devices", d, "uevent"), os.W_OK):
            return d
    return None


class UeventTest(PciTestBase):
    """Hotplug at once: a PCI uevent from the kernel rescans; without uevents, the periodic rescan."""

    def setUp(self):
        self.real = real_pci_device()
        if not self.real:
            self.skipTest("no PCI device with a writable uevent file on this machine")
        super().setUp()

    def synthetic_uevent(self):
        with open(os.path.join("/sys/bus/pci/devices", self.real, "uevent"), "w") as f:
            f.write("change")

    def test_a_uevent_rescans_at_once_and_the_periodic_rescan_still_runs(self):
        self.assertIn("uevents: listening for PCI hotplug", self.fs.log_text())
        fpga = self.by_address()["0000:86:00.0"]
        fake_sysfs.remove_device(self.tree, "0000:86:00.0")  # unplugged: no rescan comes for 60 s
        self.synthetic_uevent()
        wait_for(lambda: self.acc(fpga, "status") == "offline\n", timeout=5, what="the rescan the uevent made")
        # (logged once the rescan returns, which may be after the status shows it)
        wait_for(lambda: "uevent: pci change %s: rescanned" % self.real in self.fs.log_text(), timeout=5,
                 what="the rescan logged with its uevent")
        fake_sysfs.restore_device(self.tree, "0000:86:00.0")
        self.synthetic_uevent()
        wait_for(lambda: self.acc(fpga, "status") == "available\n", timeout=5, what="back at the next uevent")

    def test_without_uevents_it_says_so_once_and_rescans_periodically(self):
        self.fs.stop()
        before = len(self.fs.log_text())  # the log goes on in the same file
        shim = os.path.join(BUILD_DIR, "no_netlink.so")
        self.fs = self.start("--rescan-interval", "1", db=self.fs.db, env={
            "LD_PRELOAD": shim,
            # an ASan build's runtime then is not the first library
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"})
        fpga = self.by_address()["0000:86:00.0"]
        fake_sysfs.remove_device(self.tree, "0000:86:00.0")
        wait_for(lambda: self.acc(fpga, "status") == "offline\n", timeout=10, what="the periodic rescan")
        log = self.fs.log_text()[before:]
        self.assertEqual(log.count("uevents unavailable"), 1, log)
        self.assertIn("uevents unavailable (socket: Permission denied)", log)
        self.assertNotIn("uevents: listening", log)


class VgpuTest(KernelTestBase):
    def setUp(self):
        super().setUp()
        self.t4 = self.by_address()["0000:d8:00.0"]
        self.types = os.path.join(self.tree, "bus/pci/devices/0000:d8:00.0/mdev_supported_types")

    def available(self, type_id):
        with open(os.path.join(self.types, type_id, "available_instances")) as f:
            return int(f.read())

    def mdevs(self):
        path = os.path.join(self.tree, "bus/mdev/devices")
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def test_the_offered_types_are_shown_with_their_free_instances(self):
        self.assertEqual(json.loads(self.acc(self.t4, "mdev_types")), {
            "nvidia-222": {"name": "GRID T4-1B", "available_instances": 16},
            "nvidia-223": {"name": "GRID T4-2B", "available_instances": 8}})
        self.assertEqual(self.acc(self.by_address()["0000:17:00.0"], "mdev_types"), "")

    def test_a_vm_attach_with_a_vgpu_type_creates_the_mdev_and_detach_removes_it(self):
        self.ok("""echo '{"num": 1, "vgpu_type": "nvidia-222"}' > accelerators/%s/spec""" % self.t4)
        self.ok("echo vm %s > accelerators/%s/attach" % (self.VM, self.t4))
        handle = json.loads(self.acc(self.t4, "attach_handle"))
        mdev = handle["uuid"]
        self.assertEqual(handle, {"type": "MDEV", "uuid": mdev, "mdev_type": "nvidia-222", "address": "0000:d8:00.0"})
        self.assertEqual(uuidlib.UUID(mdev).version, 5)
        self.assertEqual(self.journal(), [
            "bus/pci/devices/0000:d8:00.0/mdev_supported_types/nvidia-222/create " + mdev])
        self.assertEqual(self.mdevs(), [mdev])
        self.assertEqual(self.available("nvidia-222"), 15)
        self.assertEqual(json.loads(self.acc(self.t4, "mdev_types"))["nvidia-222"]["available_instances"], 15)
        self.assertEqual(self.acc(self.t4, "driver"), "nvidia\n")  # the GPU itself stays with its driver
        self.ok("echo > accelerators/%s/attach" % self.t4)
        self.assertEqual(self.journal()[1:], ["bus/mdev/devices/%s/remove 1" % mdev])
        self.assertEqual(self.mdevs(), [])
        self.assertEqual(self.available("nvidia-222"), 16)

    def test_the_vgpu_is_recreated_after_a_reboot(self):
        self.ok("""echo '{"vgpu_type": "nvidia-223"}' > accelerators/%s/spec""" % self.t4)
        self.ok("echo vm %s > accelerators/%s/attach" % (self.VM, self.t4))
        mdev = json.loads(self.acc(self.t4, "attach_handle"))["uuid"]
        self.fs.stop()
        import shutil
        shutil.rmtree(os.path.join(self.tree, "bus/mdev/devices", mdev))  # a reboot forgets mediated devices
        self.fs = self.start(db=self.fs.db)
        wait_for(lambda: self.mdevs() == [mdev], what="the re-created vGPU")
        self.assertEqual(self.acc(self.t4, "status"), "attached\n")
        self.assertEqual(json.loads(self.acc(self.t4, "attach_handle"))["uuid"], mdev)

    def test_a_type_the_gpu_does_not_offer_is_einval(self):
        self.ok("""echo '{"vgpu_type": "nvidia-999"}' > accelerators/%s/spec""" % self.t4)
        self.fails("echo vm %s > accelerators/%s/attach" % (self.VM, self.t4), "Invalid argument")
        self.assertIn("it offers nvidia-222, nvidia-223", self.acc(self.t4, "error"))
        self.assertEqual(self.mdevs(), [])
        self.assertEqual(self.journal(), [])


if __name__ == "__main__":
    unittest.main()
