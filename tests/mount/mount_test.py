"""Mount tests: every operation of the README, with real programs, against a real mount."""
import errno
import json
import os
import re
import subprocess
import sys
import threading
import uuid as uuidlib

from harness import BIN, HOST, Mount, MountTest, echo_into, is_mounted, wait_for

U1 = "8e45a2ea-5364-4b0d-a252-bf8becaa606e"
U2 = "eaaf1c04-ced2-40e4-89a2-87edded06d64"
VM1 = "11111111-2222-4333-8444-555555555555"
VM2 = "66666666-7777-4888-9999-aaaaaaaaaaaa"


class TreeTest(MountTest):
    def test_lists_the_fake_accelerators_with_their_files(self):
        uuids = self.uuids()
        self.assertEqual(len(uuids), 4)
        for u in uuids:
            self.assertRegex(u, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
            self.assertEqual(sorted(os.listdir(self.fs.path("accelerators", u))), sorted(
                ["name", "spec", "attach", "status", "error", "device_type", "acc_type", "vendor_id",
                 "product_id", "remotable", "driver", "attach_handle", "reported_by", "model", "numa_node",
                 "iommu_group", "physfn", "mdev_types", "virtfns", "sriov_totalvfs", "sriov_numvfs",
                 "subsystem_id", "health", "maintenance"]))
            self.assertEqual(self.acc(u, "maintenance"), "0\n")
            self.assertEqual(self.acc(u, "health"), "ok\n")
            self.assertEqual(self.acc(u, "status"), "available\n")
            self.assertEqual(self.acc(u, "reported_by"), "fake\n")
            self.assertIn(self.acc(u, "driver"), ["nvidia\n", "dfl-pci\n", "c6xx\n"])
            self.assertRegex(self.acc(u, "numa_node"), r"^[01]\n$")
            self.assertEqual(self.acc(u, "physfn"), "")
            self.assertEqual(self.acc(u, "spec"), "{}\n")
            self.assertEqual(self.acc(u, "attach"), "")
            self.assertRegex(self.acc(u, "vendor_id"), r"^[0-9a-f]{4}\n$")
        types = sorted(self.acc(u, "device_type") for u in uuids)
        self.assertEqual(types, ["CRYPTO\n", "FPGA\n", "GPU\n", "GPU\n"])

    def test_modes_match_the_tree(self):
        out = self.ok("stat -c '%a %F %n' . accelerators by-name create accelerators/*/ | sort -u")
        self.assertIn("755 directory .", out)
        self.assertIn("775 directory accelerators", out)
        self.assertIn("555 directory by-name", out)
        self.assertIn("220 regular empty file create", out)
        u = self.uuids()[0]
        modes = dict(line.split()[::-1] for line in self.ok("cd accelerators/%s && stat -c '%%a %%n' *" % u).split("\n")
                     if line)
        self.assertEqual(modes, {"name": "664", "spec": "664", "attach": "664", "status": "444", "error": "444",
                                 "device_type": "444", "acc_type": "444", "vendor_id": "444", "product_id": "444",
                                 "remotable": "444", "driver": "444", "attach_handle": "444", "reported_by": "444",
                                 "model": "444", "numa_node": "444", "iommu_group": "444", "physfn": "444",
                                 "mdev_types": "444", "virtfns": "444", "sriov_totalvfs": "444",
                                 "sriov_numvfs": "444", "subsystem_id": "444", "health": "444",
                                 "maintenance": "664"})

    def test_by_name_links_every_accelerator(self):
        for name in os.listdir(self.fs.path("by-name")):
            target = os.readlink(self.fs.path("by-name", name))
            self.assertRegex(target, r"^\.\./accelerators/[0-9a-f-]{36}$")
            self.assertEqual(self.read("by-name", name, "name"), name + "\n")

    def test_stat_size_equals_content_for_every_file(self):
        u = self.fake_uuid("GPU")
        self.ok("echo 'vm %s' > accelerators/%s/attach" % (VM1, u))
        for f in os.listdir(self.fs.path("accelerators", u)):
            p = self.fs.path("accelerators", u, f)
            self.assertEqual(os.stat(p).st_size, len(self.read("accelerators", u, f).encode()), f)
        self.assertEqual(self.ok("cat accelerators/%s/attach_handle | wc -c" % u).strip(),
                         self.ok("stat -c %%s accelerators/%s/attach_handle" % u).strip())

    def test_unknown_uuid_is_enoent(self):
        missing = str(uuidlib.uuid4())
        self.fails("cat accelerators/%s/spec" % missing, "No such file or directory")
        self.fails("stat accelerators/%s" % missing, "No such file or directory")
        self.fails("echo '{}' > accelerators/%s/spec" % missing, "No such file or directory")
        self.fails("cat accelerators/%s/nosuchfile" % self.uuids()[0], "No such file or directory")


class CreateTest(MountTest):
    def test_mkdir_creates_an_available_accelerator_named_by_its_uuid(self):
        self.ok("mkdir accelerators/" + U1)
        self.assertIn(U1, self.uuids())
        self.assertEqual(self.acc(U1, "name"), U1 + "\n")
        self.assertEqual(self.acc(U1, "spec"), "{}\n")
        self.assertEqual(self.acc(U1, "status"), "available\n")
        self.assertEqual(self.acc(U1, "driver"), "")
        self.assertEqual(self.acc(U1, "reported_by"), "")
        self.assertEqual(os.readlink(self.fs.path("by-name", U1)), "../accelerators/" + U1)

    def test_mkdir_existing_is_eexist(self):
        self.make(U1)
        self.fails("mkdir accelerators/" + U1, "File exists")
        self.assertEqual(self.uuids().count(U1), 1)

    def test_create_file_takes_the_cyborg_post_body(self):
        self.ok("""printf '%%s\\n' '{"name": "IPSec Card", "uuid": "%s"}' > create""" % U1)
        self.assertEqual(self.acc(U1, "name"), "IPSec Card\n")
        self.assertEqual(os.readlink(self.fs.path("by-name", "IPSec Card")), "../accelerators/" + U1)
        self.ok("""echo '{"name":"no uuid given"}' > create""")
        target = os.readlink(self.fs.path("by-name", "no uuid given"))
        self.assertIn(os.path.basename(target), self.uuids())

    def test_create_with_python_in_several_writes(self):
        with open(self.fs.path("create"), "w") as f:
            f.write('{"name":')
            f.flush()
            f.write(' "py", "uuid": "%s"}\n' % U2.upper())
        self.assertEqual(self.acc(U2, "name"), "py\n")

    def test_create_with_a_taken_name_or_uuid_is_eexist(self):
        self.make(U1)
        self.fails("""echo '{"name":"%s"}' > create""" % U1, "File exists")
        self.fails("""echo '{"name":"other", "uuid":"%s"}' > create""" % U1, "File exists")
        self.assertEqual(len(self.uuids()), 5)

    def test_create_body_over_64k_is_efbig(self):
        body = '{"name": "%s"}' % ("x" * 70000)
        with self.assertRaises(OSError) as e:
            with open(self.fs.path("create"), "w") as f:
                f.write(body)
        self.assertEqual(e.exception.errno, errno.EFBIG)
        self.assertEqual(len(self.uuids()), 4)

    def test_create_reads_as_empty(self):
        rc, out, err = self.sh("cat create")
        self.assertEqual((rc, out), (0, ""))
        self.assertEqual(os.stat(self.fs.path("create")).st_size, 0)


class SpecTest(MountTest):
    def setUp(self):
        super().setUp()
        self.u = self.make(U1)
        self.spec = "accelerators/%s/spec" % U1

    def test_what_you_write_is_what_you_read(self):
        for text in ['{"num":1}\n', '{"num":1}', '{\n   "remote": 0,\n   "num": 1\n}\n']:
            with open(self.fs.path(self.spec), "w") as f:
                f.write(text)
            self.assertEqual(self.read(self.spec), text)
            self.assertEqual(os.stat(self.fs.path(self.spec)).st_size, len(text))

    def test_cyborg_example_spec_sets_the_derived_files(self):
        spec = {"remote": 1, "num": 1, "device_type": "CRYPTO", "acc_type": "qat",
                "acc_capability": {"num": 2, "ipsec": {"aes": {"3des": 50, "num": 1}}}}
        self.ok("echo '%s' > %s" % (json.dumps(spec), self.spec))
        self.assertEqual(json.loads(self.read(self.spec)), spec)
        self.assertEqual(self.acc(U1, "device_type"), "CRYPTO\n")
        self.assertEqual(self.acc(U1, "acc_type"), "qat\n")
        self.assertEqual(self.acc(U1, "remotable"), "1\n")
        self.assertEqual(self.acc(U1, "error"), "")

    def test_bad_json_fails_the_write_and_keeps_the_old_value(self):
        self.ok("""echo '{"num": 2}' > %s""" % self.spec)
        err = self.fails("echo '{bad' > " + self.spec, "write error: Invalid argument")
        self.assertIn("echo: write error", err)
        self.assertEqual(self.read(self.spec), '{"num": 2}\n')
        self.assertRegex(self.acc(U1, "error"), r"^spec: line 1, column \d+: .+\n$")
        self.fails("printf '{\\n  \"a\": 1\\n  \"b\": 2\\n}\\n' > " + self.spec, "Invalid argument")
        self.assertRegex(self.acc(U1, "error"), r"^spec: line 3, column \d+: .*expected .}.")
        self.assertEqual(self.read(self.spec), '{"num": 2}\n')

    def test_nesting_is_bounded_at_32_levels(self):
        deep_ok = '{"a":' * 31 + '{}' + '}' * 31
        self.ok("printf '%%s' '%s' > %s" % (deep_ok, self.spec))
        too_deep = '{"a":' * 32 + '{}' + '}' * 32
        self.fails("printf '%%s' '%s' > %s" % (too_deep, self.spec), "Invalid argument")
        self.assertIn("nesting deeper than 32", self.acc(U1, "error"))
        self.assertEqual(self.read(self.spec), deep_ok)

    def test_a_document_in_two_processes_writes_is_applied(self):
        rc, out, err = self.sh("{ /bin/echo '{'; /bin/echo '\"num\": 3}'; } > " + self.spec)
        self.assertEqual(self.read(self.spec), '{\n"num": 3}\n')
        self.assertEqual(self.acc(U1, "error"), "")

    def test_an_incomplete_document_waits_and_the_error_file_says_so(self):
        # No close(2) reaches the daemon: the write succeeds, the value stays, error explains.
        self.ok("/bin/echo '{\"num\":' > " + self.spec)
        self.assertEqual(self.read(self.spec), "{}\n")
        self.assertIn("waiting for the rest", self.acc(U1, "error"))
        self.assertIn("incomplete JSON document", self.acc(U1, "error"))
        self.ok("/bin/echo '{\"num\": 2}' > " + self.spec)  # a new value at offset 0
        self.assertEqual(self.read(self.spec), '{"num": 2}\n')
        self.assertEqual(self.acc(U1, "error"), "")

    def test_large_spec_in_4k_pieces_applies_and_over_64k_is_efbig(self):
        big = json.dumps({"device_type": "GPU", "blob": "x" * 60000}) + "\n"
        with open(self.fs.path(self.spec), "w", buffering=4096) as f:
            for i in range(0, len(big), 4096):
                f.write(big[i:i + 4096])
        self.assertEqual(self.read(self.spec), big)
        huge = json.dumps({"blob": "y" * 70000})
        path = os.path.join(self.workdir, "huge.json")
        with open(path, "w") as f:
            f.write(huge)
        self.fails("cat %s > %s" % (path, self.spec), "File too large")
        self.assertEqual(self.read(self.spec), big)

    def test_rewriting_the_same_meaning_keeps_the_value_and_takes_the_bytes(self):
        self.ok("""echo '{"num": 1}' > %s""" % self.spec)
        self.ok("""printf '{"num":1}' > %s""" % self.spec)
        self.assertEqual(self.read(self.spec), '{"num":1}')
        self.ok("cat %s > /tmp/cyborgfs-same.$$ && cat /tmp/cyborgfs-same.$$ > %s; rm -f /tmp/cyborgfs-same.$$"
                % (self.spec, self.spec))
        self.assertEqual(self.read(self.spec), '{"num":1}')

    def test_write_at_an_offset_that_continues_nothing_is_einval(self):
        self.ok("""echo '{"num": 1}' > %s""" % self.spec)
        self.fails("""echo '{"num": 2}' >> %s""" % self.spec, "Invalid argument")
        self.assertEqual(self.read(self.spec), '{"num": 1}\n')

    def test_overwrite_without_truncation_never_mixes_in_the_old_value(self):
        self.ok("""echo '{"num": 1, "device_type": "LONGER"}' > %s""" % self.spec)
        self.ok("""printf '{"num": 2}\\n' | dd of=%s conv=notrunc status=none""" % self.spec)
        self.assertEqual(self.read(self.spec), '{"num": 2}\n')

    def test_a_truncate_alone_changes_nothing(self):
        self.ok("""echo '{"num": 1}' > %s""" % self.spec)
        self.ok(": > " + self.spec)
        self.ok("truncate -s 0 " + self.spec)
        self.assertEqual(self.read(self.spec), '{"num": 1}\n')

    def test_an_in_place_patch_gives_the_patched_document(self):
        self.ok("""echo '{"num": 1, "device_type": "GPU"}' > %s""" % self.spec)
        self.ok("printf 2 | dd of=%s bs=1 seek=8 conv=notrunc status=none" % self.spec)
        self.assertEqual(self.read(self.spec), '{"num": 2, "device_type": "GPU"}\n')
        with open(self.fs.path(self.spec), "r+b") as f:  # python: seek and write, no truncation
            f.seek(8)
            f.write(b"3")
        self.assertEqual(self.read(self.spec), '{"num": 3, "device_type": "GPU"}\n')
        self.assertEqual(self.acc(U1, "device_type"), "GPU\n")
        self.assertEqual(self.acc(U1, "error"), "")

    def test_a_writer_that_pauses_past_the_quiet_time_gets_einval_never_a_mixed_value(self):
        # The first part is forgotten after 5 s; its rest must not land on the old value.
        self.ok("""echo '{"num": 1, "device_type": "GPU"}' > %s""" % self.spec)
        spec = subprocess.Popen(["bash", "-c", """( printf '{"num": 9,\\n'; sleep 6; printf ' "device_type": """
                                 """"CRYPTO"}' ) > %s""" % self.spec], cwd=self.fs.mnt, stderr=subprocess.PIPE)
        create = subprocess.Popen(["bash", "-c", """( printf '{"name":'; sleep 6; printf ' "late"}' ) > create"""],
                                  cwd=self.fs.mnt, stderr=subprocess.PIPE)
        for p in (spec, create):
            _, err = p.communicate(timeout=30)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(b"Invalid argument", err)
        self.assertEqual(self.read(self.spec), '{"num": 1, "device_type": "GPU"}\n')
        self.assertIn("first 11 bytes were forgotten", self.acc(U1, "error"))
        self.assertFalse(os.path.lexists(self.fs.path("by-name", "late")))

    def test_a_read_after_a_write_returns_exactly_the_stored_value(self):
        # Writes that succeed without changing the value leave their bytes in the
        # kernel's pages: a read after them must not see those bytes.
        self.ok("""echo '{"num": 1}' > %s""" % self.spec)
        path = self.fs.path(self.spec)
        for _ in range(100):
            fd = os.open(path, os.O_WRONLY)  # no O_TRUNC: the kernel keeps its pages
            os.write(fd, b"[[[[")  # unfinished: acknowledged, the value unchanged
            os.close(fd)
            self.assertEqual(self.read(self.spec), '{"num": 1}\n')
        attach = self.fs.path("accelerators", U1, "attach")
        for _ in range(100):
            fd = os.open(attach, os.O_WRONLY)
            os.write(fd, b"\n")  # detaching what is detached: 0 bytes stay 0 bytes
            os.close(fd)
            self.assertEqual(self.acc(U1, "attach"), "")

    def test_a_write_through_a_shared_mapping_is_applied_and_audited_as_the_kernels(self):
        import mmap
        self.ok("""echo '{"num": 1, "device_type": "GPU"}' > %s""" % self.spec)
        fd = os.open(self.fs.path(self.spec), os.O_RDWR)
        try:
            with mmap.mmap(fd, os.fstat(fd).st_size) as m:
                m[8:9] = b"7"
                m.flush()  # msync: the kernel writes the dirty page back
        finally:
            os.close(fd)
        wait_for(lambda: self.read(self.spec) == '{"num": 7, "device_type": "GPU"}\n', what="the write-back")
        self.assertIn('uid=- pid=- command="written back by the kernel" accelerator="%s" file="spec"' % U1,
                      self.fs.log_text())

    def test_a_reader_after_a_write_sees_the_new_value(self):
        with open(self.fs.path(self.spec)) as reader:
            self.assertEqual(reader.read(), "{}\n")
            self.ok("""echo '{"num": 9}' > %s""" % self.spec)
            reader.seek(0)
            self.assertEqual(reader.read(), '{"num": 9}\n')


class AttachTest(MountTest):
    def test_attach_to_a_vm_and_detach_through_the_fake_driver(self):
        u = self.fake_uuid("GPU")
        attach = "accelerators/%s/attach" % u
        self.ok("echo 'vm %s' > %s" % (VM1, attach))
        self.assertEqual(self.acc(u, "attach"), "vm %s\n" % VM1)
        self.assertEqual(self.acc(u, "status"), "attached\n")
        handle = json.loads(self.acc(u, "attach_handle"))
        self.assertEqual(handle["type"], "TEST_PCI")
        self.assertRegex(handle["address"], r"^0000:f0:00\.\d$")
        self.ok("echo > " + attach)
        self.assertEqual(self.acc(u, "attach"), "")
        self.assertEqual(os.stat(self.fs.path(attach)).st_size, 0)
        self.assertEqual(self.acc(u, "status"), "available\n")
        self.assertEqual(self.acc(u, "attach_handle"), "")

    def test_maintenance_keeps_the_attachment_refuses_a_new_one_and_is_audited(self):
        u = self.fake_uuid("GPU")
        attach = "accelerators/%s/attach" % u
        self.ok("echo 'vm %s' > %s" % (VM1, attach))
        self.ok("echo 1 > accelerators/%s/maintenance" % u)
        self.assertEqual(self.acc(u, "maintenance"), "1\n")
        self.assertEqual(self.acc(u, "attach"), "vm %s\n" % VM1)  # kept
        self.ok("echo 1 > accelerators/%s/maintenance" % u)  # again: a no-op
        self.ok("echo > " + attach)  # a detach is allowed
        self.fails("echo 'vm %s' > %s" % (VM1, attach), "Device or resource busy")
        self.assertIn("in maintenance", self.acc(u, "error"))
        for bad in ["2", "yes", "on"]:
            self.fails("echo %s > accelerators/%s/maintenance" % (bad, u), "Invalid argument")
        self.assertEqual(self.acc(u, "maintenance"), "1\n")
        self.assertIn('file="maintenance" old="0\\n" new="1\\n"', self.fs.log_text())
        # Over HTTP: Cyborg's device enable and disable; the record says it.
        self.assertEqual(self.api("POST", "/accelerators/%s/enable" % u).json()["maintenance"], 0)
        self.ok("echo 'vm %s' > %s" % (VM1, attach))
        reply = self.api("POST", "/accelerators/%s/disable" % u)
        self.assertEqual((reply.status, reply.json()["maintenance"]), (200, 1))
        self.ok("echo > " + attach)
        reply = self.api("PUT", "/accelerators/" + u, {"instance_uuid": VM1})
        self.assertEqual(reply.status, 409)
        self.assertIn("in maintenance", reply.json()["error"]["message"])
        self.assertEqual(self.acc(u, "status"), "available\n")

    def test_attach_to_this_host(self):
        u = self.fake_uuid("FPGA")
        self.ok("printf 'host %s' > accelerators/%s/attach" % (HOST, u))
        self.assertEqual(self.acc(u, "attach"), "host " + HOST)
        self.assertEqual(self.acc(u, "status"), "attached\n")

    def test_the_fake_driver_cannot_attach_to_another_host(self):
        u = self.fake_uuid("FPGA")
        self.fails("echo 'host elsewhere' > accelerators/%s/attach" % u, "Invalid argument")
        self.assertIn("this host", self.acc(u, "error"))
        self.assertEqual(self.acc(u, "status"), "available\n")

    def test_a_hand_made_accelerator_records_the_attachment_only(self):
        self.make(U1)
        self.ok("echo 'host other-host.example' > accelerators/%s/attach" % U1)
        self.assertEqual(self.acc(U1, "status"), "attached\n")
        self.assertEqual(self.acc(U1, "attach_handle"), "")

    def test_attaching_elsewhere_is_ebusy_and_the_same_target_is_a_noop(self):
        u = self.fake_uuid("GPU")
        attach = "accelerators/%s/attach" % u
        self.ok("echo 'vm %s' > %s" % (VM1, attach))
        self.ok("echo 'vm %s' > %s" % (VM1, attach))
        before = self.snapshot(u)
        self.fails("echo 'vm %s' > %s" % (VM2, attach), "Device or resource busy")
        self.assertIn("attached to vm " + VM1, self.acc(u, "error"))
        self.fails("echo 'host %s' > %s" % (HOST, attach), "Device or resource busy")
        self.assertEqual(self.snapshot(u), before)

    def test_detaching_a_detached_accelerator_succeeds(self):
        u = self.fake_uuid("GPU")
        self.ok("echo > accelerators/%s/attach" % u)
        self.ok(": > accelerators/%s/attach" % u)
        self.assertEqual(self.acc(u, "status"), "available\n")

    def test_racing_attaches_exactly_one_wins(self):
        for round_ in range(10):
            u = str(uuidlib.uuid4())
            self.make(u)
            path = self.fs.path("accelerators", u, "attach")
            results = []
            barrier = threading.Barrier(2)

            def attach(vm):
                barrier.wait()
                r = subprocess.run(["bash", "-c", "printf 'vm %s' > %s" % (vm, path)], capture_output=True,
                                   text=True)
                results.append((vm, r.returncode, r.stderr))

            threads = [threading.Thread(target=attach, args=(vm,)) for vm in (VM1, VM2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winners = [vm for vm, rc, _ in results if rc == 0]
            self.assertEqual(len(winners), 1, results)
            loser = [err for _, rc, err in results if rc != 0][0]
            self.assertIn("Device or resource busy", loser)
            self.assertEqual(self.acc(u, "attach"), "vm " + winners[0])


class OfflineTest(MountTest):
    def test_devices_no_longer_reported_go_offline_and_come_back(self):
        gone = [os.readlink(self.fs.path("by-name", n)).split("/")[-1] for n in os.listdir(self.fs.path("by-name"))
                if n.endswith(":00.3") or n.endswith(":00.2")]
        self.assertEqual(len(gone), 2)
        self.ok("echo 'vm %s' > accelerators/%s/attach" % (VM1, gone[0]))
        self.restart(fake_devices=2)
        self.assertEqual(len(self.uuids()), 4)
        for u in gone:
            self.assertEqual(self.acc(u, "status"), "offline\n")
        self.assertEqual(self.acc(gone[0], "attach"), "vm %s\n" % VM1)
        self.fails("echo 'vm %s' > accelerators/%s/attach" % (VM2, gone[1]), "No such device")
        self.assertIn("offline", self.acc(gone[1], "error"))
        self.restart(fake_devices=4)
        self.assertEqual(self.acc(gone[0], "status"), "attached\n")
        self.assertEqual(json.loads(self.acc(gone[0], "attach_handle"))["type"], "TEST_PCI")
        self.assertEqual(self.acc(gone[1], "status"), "available\n")
        # Going and coming back are the daemon's own changes, each audited.
        log = self.fs.log_text()
        daemon = 'uid=- pid=- command="cyborgfs" accelerator="%s" file="status" '
        self.assertIn(daemon % gone[0] + 'old="attached\\n" new="offline\\n"', log)
        self.assertIn(daemon % gone[1] + 'old="available\\n" new="offline\\n"', log)
        self.assertIn(daemon % gone[0] + 'old="offline\\n" new="attached\\n"', log)
        self.assertIn(daemon % gone[1] + 'old="offline\\n" new="available\\n"', log)

    def test_without_drivers_every_reported_accelerator_is_offline(self):
        self.make(U1)
        self.restart("--drivers", "none")
        for u in self.uuids():
            self.assertEqual(self.acc(u, "status"), "available\n" if u == U1 else "offline\n")
        self.ok("echo 'vm %s' > accelerators/%s/attach" % (VM1, U1))

    def test_uuids_are_stable_across_restarts_and_database_rebuilds(self):
        before = self.uuids()
        self.restart()
        self.assertEqual(self.uuids(), before)
        self.fs.stop()
        os.remove(self.fs.db)
        self.fs = self.start(db=self.fs.db)
        self.assertEqual(self.uuids(), before)


class RemoveTest(MountTest):
    def test_rmdir_removes_a_hand_made_accelerator(self):
        self.make(U1)
        self.ok("rmdir accelerators/" + U1)
        self.assertNotIn(U1, self.uuids())
        self.assertNotIn(U1, os.listdir(self.fs.path("by-name")))
        self.fails("rmdir accelerators/" + U1, "No such file or directory")

    def test_rmdir_of_an_attached_accelerator_is_ebusy(self):
        self.make(U1)
        self.ok("echo 'vm %s' > accelerators/%s/attach" % (VM1, U1))
        self.fails("rmdir accelerators/" + U1, "Device or resource busy")
        self.assertIn("detach", self.acc(U1, "error"))
        self.assertEqual(self.acc(U1, "status"), "attached\n")

    def test_rmdir_of_a_reported_accelerator_is_ebusy_until_offline(self):
        u = [os.readlink(self.fs.path("by-name", n)).split("/")[-1] for n in os.listdir(self.fs.path("by-name"))
             if n.endswith(":00.3")][0]
        self.fails("rmdir accelerators/" + u, "Device or resource busy")
        self.assertIn("still reported by driver fake", self.acc(u, "error"))
        self.restart(fake_devices=3)
        self.ok("rmdir accelerators/" + u)
        self.assertNotIn(u, self.uuids())


class NameTest(MountTest):
    def setUp(self):
        super().setUp()
        self.make(U1)
        self.make(U2)
        self.name = "accelerators/%s/name" % U1

    def test_renaming_updates_by_name(self):
        self.ok("echo 'IPSec Card' > " + self.name)
        self.assertEqual(self.read(self.name), "IPSec Card\n")
        self.assertEqual(os.readlink(self.fs.path("by-name", "IPSec Card")), "../accelerators/" + U1)
        self.assertNotIn(U1, os.listdir(self.fs.path("by-name")))
        self.ok("printf crypto-1 > " + self.name)
        self.assertEqual(self.read(self.name), "crypto-1")

    def test_a_taken_name_is_eexist(self):
        self.fails("echo %s > %s" % (U2, self.name), "File exists")
        self.assertEqual(self.read(self.name), U1 + "\n")
        self.assertIn("taken", self.acc(U1, "error"))

    def test_rewriting_the_current_value_of_any_file_is_a_noop(self):
        self.ok("echo 'vm %s' > accelerators/%s/attach" % (VM1, U1))
        for f in ["name", "spec", "attach"]:
            path = "accelerators/%s/%s" % (U1, f)
            before = self.read(path)
            self.ok('v="$(cat %s)"; printf "%%s\\n" "$v" > %s' % (path, path))
            self.assertEqual(self.read(path), before)
        self.assertEqual(self.acc(U1, "status"), "attached\n")


class RefusalTest(MountTest):
    def test_read_only_files_refuse_writes_with_eacces(self):
        u = self.fake_uuid("GPU")
        before = self.snapshot(u)
        for f in ["status", "error", "device_type", "acc_type", "vendor_id", "product_id", "remotable", "driver",
                  "attach_handle"]:
            self.fails("echo x > accelerators/%s/%s" % (u, f), "Permission denied")
        self.assertEqual(self.snapshot(u), before)

    def test_creating_where_the_tree_has_nothing_is_eacces(self):
        u = self.fake_uuid("GPU")
        for script in ["touch newfile", "touch accelerators/newfile", "mkdir newdir", "echo x > by-name/x",
                       "mkdir by-name/x", "ln -s a b", "mkfifo accelerators/fifo"]:
            self.fails(script, "Permission denied")
        self.assertEqual(sorted(os.listdir(self.fs.mnt)),
                         ["accelerators", "accelerators.json", "by-name", "create", "drivers", "rescan", "stats"])
        self.assertEqual(sorted(os.listdir(self.fs.path("accelerators"))), self.uuids())
        self.assertEqual(len(self.uuids()), 4)
        # In an accelerator folder only regular scratch files can be made: EPERM.
        self.fails("mkfifo accelerators/%s/fifo" % u, "Operation not permitted")
        self.fails("ln -s spec accelerators/%s/link" % u, "Operation not permitted")
        self.fails("ln -s a accelerators/link", "Permission denied")
        self.assertNotIn("link", os.listdir(self.fs.path("accelerators", u)))

    def test_a_read_only_file_refuses_at_open_with_o_trunc_and_at_write_without(self):
        u = self.fake_uuid("GPU")
        err = self.fails("echo x > accelerators/%s/status" % u, "Permission denied")
        self.assertNotIn("write error", err)  # the shell's O_TRUNC is refused: at open(2)
        fd = os.open(self.fs.path("accelerators", u, "status"), os.O_WRONLY)  # root may open it
        try:
            with self.assertRaises(PermissionError):
                os.write(fd, b"x\n")
        finally:
            os.close(fd)
        self.assertEqual(self.acc(u, "status"), "available\n")

    def test_removing_or_renaming_listed_files_is_eperm(self):
        u = self.fake_uuid("GPU")
        for script in ["rm -f accelerators/%s/spec" % u, "mv accelerators/%s/spec accelerators/%s/x" % (u, u),
                       "rm -f create", "rm -f by-name/*", "rmdir by-name", "mv accelerators/%s accelerators/x" % u]:
            self.fails(script, "Operation not permitted")
        self.assertEqual(self.acc(u, "spec"), "{}\n")
        self.assertEqual(len(os.listdir(self.fs.path("by-name"))), 4)

    def test_harmless_calls_on_listed_files_succeed(self):
        u = self.fake_uuid("GPU")
        self.ok("""echo '{"num": 1}' > accelerators/%s/spec && echo vm %s > accelerators/%s/attach"""
                % (u, "11111111-2222-4333-8444-555555555555", u))
        before = self.snapshot(u)
        for f in ["spec", "attach", "name"]:
            path = "accelerators/%s/%s" % (u, f)
            self.ok("chmod 600 {0} && chown 1:1 {0} && touch -d 2001-01-01 {0} && sync {0}".format(path))
            self.ok("truncate -s 0 {0} && truncate -s 3 {0}".format(path))
            fd = os.open(self.fs.path(path), os.O_WRONLY)
            try:
                os.ftruncate(fd, 2)
                os.fsync(fd)
            finally:
                os.close(fd)
        self.assertEqual(self.snapshot(u), before)


class DurabilityTest(MountTest):
    def test_acknowledged_writes_survive_kill_9(self):  # with the default --sync normal
        self.writes_survive_kill_9()

    def test_acknowledged_writes_survive_kill_9_with_sync_full(self):
        self.fs.stop()
        self.fs = self.start("--sync", "full", db=self.fs.db)
        self.writes_survive_kill_9("--sync", "full")

    def writes_survive_kill_9(self, *args):
        gpu = self.fake_uuid("GPU")
        self.make(U1)
        self.ok("""echo '{"num": 2, "device_type": "FPGA"}' > accelerators/%s/spec""" % U1)
        self.ok("echo renamed > accelerators/%s/name" % U1)
        self.ok("echo 'vm %s' > accelerators/%s/attach" % (VM1, gpu))
        self.ok("""printf '{"name":"posted","uuid":"%s"}' > create""" % U2)
        self.restart(*args, crash=True)
        self.assertEqual(self.acc(U1, "spec"), '{"num": 2, "device_type": "FPGA"}\n')
        self.assertEqual(self.acc(U1, "device_type"), "FPGA\n")
        self.assertEqual(self.acc(U1, "name"), "renamed\n")
        self.assertEqual(self.acc(gpu, "attach"), "vm %s\n" % VM1)
        self.assertEqual(self.acc(gpu, "status"), "attached\n")
        self.assertEqual(self.acc(U2, "name"), "posted\n")

    def test_a_rejected_write_survives_nothing(self):
        self.make(U1)
        self.fails("echo '{\"num\": 0}' > accelerators/%s/spec" % U1, "Invalid argument")
        self.restart(crash=True)
        self.assertEqual(self.acc(U1, "spec"), "{}\n")
        self.assertEqual(self.acc(U1, "error"), "")


class CommandTest(MountTest):
    def run_bin(self, *args, timeout=20):
        return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def test_help_and_version(self):
        r = self.run_bin("--help")
        self.assertEqual(r.returncode, 0)
        for option in ["--db", "--drivers", "--fake-devices", "--sysfs-root", "--pci-ids", "--device-table", "--host",
                       "--foreground", "-o", "--log-level", "--sync", "--rescan-interval"]:
            self.assertIn(option, r.stdout)
        self.assertNotIn("REQUIRED", r.stdout)  # MOUNTPOINT is required, and said once
        self.assertIn("required: the argument or the option", r.stdout)
        self.assertIn("0: only at start and when asked through the rescan file", r.stdout)
        self.assertIn("--log-file", r.stdout)
        r = self.run_bin("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^cyborgfs \d+\.\d+\.\d+")

    def assert_refused_before_mounting(self, args, words, code=1):
        """The start fails with one line naming `words` and exit status `code`:
        2 for options cyborgfs cannot take, 1 for a start that cannot serve."""
        mnt = os.path.join(self.workdir, "other")
        os.makedirs(mnt, exist_ok=True)
        r = self.run_bin("-f", *args, mnt)
        self.assertEqual(r.returncode, code, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn(words, r.stderr)
        self.assertFalse(is_mounted(mnt))

    def test_a_second_daemon_on_a_database_in_use_refuses_to_start(self):
        self.assert_refused_before_mounting(["--db", self.fs.db, "--drivers", "none"],
                                            "is in use by another cyborgfs")
        self.make(U1)  # the first one is untouched
        self.assertEqual(self.acc(U1, "status"), "available\n")

    def test_bad_input_ends_it_before_mounting(self):
        db = os.path.join(self.workdir, "x.db")
        table = os.path.join(self.workdir, "devices.conf")
        with open(table, "w") as f:
            f.write("# extra cards\n8086:37c8 CRYPTO\n10de:zz GPU\n")
        notdb = os.path.join(self.workdir, "not.db")
        with open(notdb, "w") as f:
            f.write("this is not a database, " * 100)
        usage = [  # options cyborgfs cannot take: exit 2
            (["--bogus"], "bogus"),
            (["--drivers", "gpu"], '--drivers gpu: unknown driver "gpu" (known: pci, fake; or none alone)'),
            (["--drivers", "fake,none"], '--drivers fake,none: "none" cannot be combined with drivers'),
            (["--device-table", table], "--device-table %s: line 3: " % table),
            (["--device-table", table + ".missing"], "--device-table %s.missing: cannot be read" % table),
            (["--device-table", self.workdir], "--device-table %s: is a folder" % self.workdir),
            (["--admin-group", "nosuchgroup"], "--admin-group: no group named nosuchgroup"),
            (["--log-level", "loud"], "loud"),
            (["--sync", "sometimes"], "sometimes"),
            (["-o", "nosuchoption"], "nosuchoption"),
        ]
        for args, words in usage:
            self.assert_refused_before_mounting(["--db", db, *args], words, code=2)
        cannot_serve = [  # good options, but no start can serve with them: exit 1
            (["--db", os.path.join(self.workdir, "no/such/dir/x.db")], "database"),
            (["--db", notdb], "not a database"),
        ]
        for args, words in cannot_serve:
            self.assert_refused_before_mounting(args, words, code=1)
        r = self.run_bin("-f", "--db", db, os.path.join(self.workdir, "missing"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("mountpoint", r.stderr)
        r = self.run_bin("-f", "--db", db)
        self.assertEqual(r.returncode, 2)
        self.assertIn("a MOUNTPOINT is required", r.stderr)
        self.assertFalse(os.path.exists(db))  # no refused start made a database

    def test_the_log_file_takes_the_log_and_is_reopened_on_sighup(self):
        log = os.path.join(self.workdir, "cyborgfs.log")
        self.restart("--log-file", log)
        self.make(U1)
        with open(log) as f:
            self.assertIn('accelerator="%s" file="mkdir"' % U1, f.read())
        os.rename(log, log + ".1")  # logrotate
        self.fs.proc.send_signal(__import__("signal").SIGHUP)
        wait_for(lambda: os.path.exists(log), what="the reopened log file")
        self.ok("echo renamed > accelerators/%s/name" % U1)
        with open(log) as f:
            self.assertIn('file="name"', f.read())
        with open(log + ".1") as f:
            self.assertNotIn('file="name"', f.read())

    def test_sigterm_and_sigint_unmount_and_exit_0(self):
        for sig in ("TERM", "INT"):
            self.fs.proc.send_signal(getattr(__import__("signal"), "SIG" + sig))
            self.assertEqual(self.fs.proc.wait(timeout=15), 0)
            self.assertFalse(is_mounted(self.fs.mnt))
            self.fs = self.start(db=self.fs.db)

    def test_fusermount_unmount_exits_0(self):
        subprocess.run(["fusermount3", "-u", self.fs.mnt], check=True)
        self.assertEqual(self.fs.proc.wait(timeout=15), 0)

    def test_without_foreground_the_parent_exits_once_the_mount_is_live(self):
        mnt = os.path.join(self.workdir, "bg")
        os.makedirs(mnt)
        r = self.run_bin("--db", os.path.join(self.workdir, "bg.db"), "--host", HOST, "--drivers", "fake",
                         "--api-socket", os.path.join(self.workdir, "bg.sock"), mnt)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            self.assertTrue(is_mounted(mnt))
            self.assertEqual(len(os.listdir(os.path.join(mnt, "accelerators"))), 4)
            daemon = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).endswith("\0" + mnt)]
            self.assertEqual(len(daemon), 1)
        finally:
            subprocess.run(["fusermount3", "-u", mnt])
        wait_for(lambda: not os.path.exists("/proc/" + daemon[0]) or _is_zombie(daemon[0]), what="daemon exit")


def _cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid) as f:
            return f.read().rstrip("\0")
    except OSError:
        return ""


def _is_zombie(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class WatchTest(MountTest):
    """poll(2) on status, health, attach and maintenance, as on sysfs files (sysfs_notify)."""

    def test_ten_watchers_wake_once_per_change_and_never_else(self):
        u = self.fake_uuid("GPU")
        attach = self.fs.path("accelerators", u, "attach")
        watchers = [self.watcher(self.fs.path("accelerators", u, "status")) for _ in range(10)]
        lines = [[] for _ in watchers]
        readers = []
        for w, out in zip(watchers, lines):
            t = threading.Thread(target=lambda w=w, out=out: out.extend(line.strip() for line in w.stdout))
            t.start()
            readers.append(t)
        for i in range(100):
            echo_into(attach, "vm 11111111-2222-4333-8444-555555555555\n" if i % 2 == 0 else "\n")
            wait_for(lambda: all(len(out) >= i + 1 for out in lines), timeout=10, what="every watcher woken")
            self.assertEqual([len(out) for out in lines], [i + 1] * len(lines), "change %d: one wake each" % i)
        for t in readers:  # each ends after 3 s without a wake
            t.join(timeout=30)
        for out in lines:
            self.assertEqual(len(out), 100, "one wake per change, none spurious")
            # each read after a wake gives the new value, whole
            self.assertEqual(out, ["woken attached" if k % 2 == 0 else "woken available" for k in range(100)])

    def test_no_change_no_wake_and_a_change_elsewhere_is_no_change(self):
        gpu, other = self.fake_uuid("GPU"), self.fake_uuid("FPGA")
        w = self.watcher(self.fs.path("accelerators", gpu, "attach"), idle=1)
        echo_into(self.fs.path("accelerators", other, "attach"), "vm 11111111-2222-4333-8444-555555555555\n")
        self.ok("echo '{\"num\": 2}' > accelerators/%s/spec" % gpu)  # a file it does not watch
        self.assertEqual(w.stdout.read(), "")  # it ended, never woken
        w.wait()
        w = self.watcher(self.fs.path("accelerators", gpu, "maintenance"), idle=5)
        echo_into(self.fs.path("accelerators", gpu, "maintenance"), "1\n")
        self.assertEqual(w.stdout.readline().strip(), "woken 1")
        self.assertEqual(json.loads(self.ok("cat stats"))["watchers"], 1, "the one that ended is forgotten")

    def test_a_closed_watcher_costs_nothing(self):
        u = self.fake_uuid("GPU")
        status = self.fs.path("accelerators", u, "status")
        watchers = [self.watcher(status, idle=60) for _ in range(10)]
        self.assertEqual(json.loads(self.ok("cat stats"))["watchers"], 10)
        for w in watchers:
            w.kill()
            w.wait()
        self.assertEqual(json.loads(self.ok("cat stats"))["watchers"], 0, "nothing kept of them")
        before = json.loads(self.ok("cat stats"))
        echo_into(self.fs.path("accelerators", u, "attach"), "vm 11111111-2222-4333-8444-555555555555\n")
        after = json.loads(self.ok("cat stats"))
        self.assertEqual(after["poll"], before["poll"], "no poll was asked for")
        w = self.watcher(status, idle=5)  # a new one is told from its own first poll
        echo_into(self.fs.path("accelerators", u, "attach"), "\n")
        self.assertEqual(w.stdout.readline().strip(), "woken available")


class StatsTest(MountTest):
    """The stats file counts the requests the daemon answers, so costs can be asserted."""

    def counts(self):
        with open(self.fs.path("stats")) as f:
            return json.load(f)

    def cost(self, action):
        """Daemon requests of `action` (reading stats is not counted)."""
        self.counts()  # the mount's first close sends a FLUSH, answered ENOSYS once and for all
        before = self.counts()
        action()
        after = self.counts()
        return {k: after[k] - before[k] for k in after if after[k] != before[k]}

    def read_each(self, paths):
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.read(fd, 65536)
            finally:
                os.close(fd)

    def test_warm_stats_and_reads_cost_no_request(self):
        u = self.fake_uuid("GPU")
        paths = [self.fs.path("accelerators", u, n) for n in ("spec", "status", "attach", "name")]
        # The first access asks the daemon; a READ marks the atime stale, so the
        # next stat asks once more. From then on the kernel answers alone.
        self.read_each(paths)
        [os.stat(p) for p in paths]
        self.assertEqual(self.cost(lambda: [os.stat(p) for p in paths]), {})
        self.assertEqual(self.cost(lambda: self.read_each(paths)), {})
        self.assertEqual(self.cost(lambda: [os.stat(p) for p in paths]), {})

    def test_a_file_that_changes_by_itself_is_read_whole_and_afresh(self):
        """stats changes at every request: read while another process makes thousands,
        each read to the end of file is one document, and the same thread's next read,
        right after a request of its own, is a new rendering that counts it."""
        drivers = self.fs.path("drivers")
        busy = subprocess.Popen([sys.executable, "-c", "import os, sys\nwhile True: os.stat(sys.argv[1])", drivers])
        try:
            wait_for(lambda: self.counts()["getattr"] > 1000, what="the busy process's requests")
            for _ in range(300):
                before = self.counts()["getattr"]  # json.load: a read(2) loop to the end of file
                os.stat(drivers)
                self.assertGreater(self.counts()["getattr"], before)
            loops = subprocess.run(["sh", "-c", "for i in $(seq 100); do python3 -c 'import json, sys; "
                                    "json.load(sys.stdin)' < stats || exit 1; cat stats drivers > /dev/null; done"],
                                   cwd=self.fs.mnt, capture_output=True, text=True, timeout=120)
            self.assertEqual(loops.returncode, 0, loops.stderr)
        finally:
            busy.kill()
            busy.wait()

    def test_a_warm_unknown_uuid_costs_no_request(self):
        missing = self.fs.path("accelerators", "00000000-0000-4000-8000-000000000000")
        self.assertFalse(os.path.exists(missing))
        self.assertEqual(self.cost(lambda: os.path.exists(missing)), {})
        self.make("00000000-0000-4000-8000-000000000000")
        self.assertTrue(os.path.isdir(missing))

    def test_a_change_costs_the_next_read_one_getattr_and_one_read(self):
        u = self.fake_uuid("GPU")
        status = self.fs.path("accelerators", u, "status")
        self.read_each([status])
        self.write_file(self.fs.path("accelerators", u, "attach"), "vm %s\n" % VM1)
        self.assertEqual(self.cost(lambda: self.read_each([status])), {"getattr": 1, "read": 1})
        self.assertEqual(self.acc(u, "status"), "attached\n")

    def test_a_warm_listing_is_served_by_the_kernel(self):
        for _ in range(2):  # the first READDIRPLUS marks the folder's atime stale
            self.ok("ls -l accelerators by-name accelerators/* > /dev/null")
        cost = self.cost(lambda: self.ok("ls -l accelerators by-name accelerators/* > /dev/null"))
        self.assertEqual(cost, {})  # not even an OPENDIR

    def test_concurrent_writers_share_commits_with_sync_full(self):
        """Group commit: 8 writer processes, --sync full; every write acknowledged and applied,
        in fewer SQLite transactions (fsyncs) than writes."""
        import multiprocessing
        self.fs.stop()
        self.fs = self.start("--sync", "full", db=self.fs.db)
        uuids = ["00000000-0000-4000-8000-%012d" % k for k in range(8)]
        for u in uuids:
            self.make(u)
        rounds = 20
        before = self.counts()

        def writer(u):
            path = self.fs.path("accelerators", u, "attach")
            for i in range(rounds):
                self.write_file(path, "vm %s\n" % VM1 if i % 2 == 0 else "\n")
            self.write_file(path, "vm %s\n" % VM1)

        processes = [multiprocessing.get_context("fork").Process(target=writer, args=(u,)) for u in uuids]
        for p in processes:
            p.start()
        for p in processes:
            p.join(timeout=120)
        self.assertTrue(all(p.exitcode == 0 for p in processes), [p.exitcode for p in processes])
        after = self.counts()
        writes = after["write"] - before["write"]
        commits = after["store_commits"] - before["store_commits"]
        self.assertEqual(writes, len(uuids) * (rounds + 1))
        self.assertLess(commits, writes)
        for u in uuids:
            self.assertEqual(self.acc(u, "status"), "attached\n")

    def test_a_start_adopts_new_devices_in_one_commit_and_a_quiet_rescan_commits_nothing(self):
        self.restart(fake_devices=300)  # 296 new devices, on a database that needs no migration
        self.assertEqual(len(self.uuids()), 300)
        self.assertEqual(self.counts()["store_commits"], 1)
        self.ok("echo 1 > rescan")
        self.assertEqual(self.counts()["store_commits"], 1)
        self.assertIn("rescan: 300 devices reported, 300 records: 0 adopted, 0 changed, 0 offline",
                      self.fs.log_text())

    def test_counts_are_per_operation_and_only_grow(self):
        first = self.counts()
        self.assertIn("lookup", first)
        self.assertIn("write", first)
        self.ok("ls -l accelerators > /dev/null")
        second = self.counts()
        self.assertGreater(second["readdir"] + second["readdirplus"], first["readdir"] + first["readdirplus"])
        self.assertTrue(all(second[k] >= first[k] for k in first))
        self.fails("echo 1 > stats", "Permission denied")


class LookupRaceTest(MountTest):
    def test_a_by_name_lookup_racing_an_rmdir_gets_the_link_or_enoent(self):
        # The link's size is computed while the accelerator may go: every lookup
        # must be checked (an unchecked one read an empty result: a garbage size, or
        # an abort with the standard library's assertions on).
        link = self.fs.path("by-name", U1)
        stop = threading.Event()
        seen = []

        def looker():
            while not stop.is_set():
                try:
                    seen.append(os.lstat(link).st_size)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    seen.append(e)

        threads = [threading.Thread(target=looker) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for _ in range(300):
                os.mkdir(self.fs.path("accelerators", U1))
                os.rmdir(self.fs.path("accelerators", U1))
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertTrue(seen)
        self.assertEqual(set(seen), {len("../accelerators/" + U1)})  # no EIO, no garbage size
        self.assertTrue(os.path.isdir(self.fs.path("accelerators")))


class HostileInputTest(MountTest):
    def test_random_bytes_never_crash_or_change_state(self):
        import random
        rng = random.Random(20261125)
        self.make(U1)
        gpu = self.fake_uuid("GPU")
        samples = [b"", b"\n", b"\0", b"\xff\xfe", b"{" * 40, b"[" * 5000, b'{"a":"\\u', b"vm ", b"host ",
                   b"vm " + b"a" * 5000, b'{"num": 1e999}', b'{"num": 18446744073709551616}', b"\n\n\n"]
        samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(100)]
        for u in (U1, gpu):
            before = self.snapshot(u)
            for data in samples:
                for f in ("spec", "attach", "name"):
                    fd = os.open(self.fs.path("accelerators", u, f), os.O_WRONLY | os.O_TRUNC)
                    try:
                        os.write(fd, data)
                        os.close(fd)
                    except OSError as e:
                        self.assertIn(e.errno, (errno.EINVAL, errno.EFBIG, errno.EEXIST), data)
                        try:
                            os.close(fd)
                        except OSError:
                            pass
            after = self.snapshot(u)
            # Random bytes may by chance form a valid name (taken: EEXIST); nothing else may change.
            after["name"] = before["name"]
            self.assertEqual(after, before)
        for data in samples[:40]:
            fd = os.open(self.fs.path("create"), os.O_WRONLY)
            try:
                os.write(fd, data)
                os.close(fd)
            except OSError as e:
                self.assertIn(e.errno, (errno.EINVAL, errno.EFBIG, errno.EEXIST))
        self.assertEqual(len(self.uuids()), 5)
        self.assertTrue(is_mounted(self.fs.mnt))
        self.assertIsNone(self.fs.proc.poll())


# `refuse`: renames a scratch file over `status` of FOLDER (refused: EACCES)
# for SECONDS; `write`: writes specs to FOLDER for SECONDS; then prints how
# many of its writes failed, and with which errno.
RACER = """
import collections, os, sys, time
role, folder, k, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
failed = collections.Counter()
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end:
    n += 1
    if role == "refuse":
        tmp = os.path.join(folder, "tmp" + k)
        with open(tmp, "w") as f:
            f.write("available\\n")
        try:
            os.rename(tmp, os.path.join(folder, "status"))
        except PermissionError:
            pass
    else:
        try:
            fd = os.open(os.path.join(folder, "spec"), os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, ('{"writer": %s, "n": %d}' % (k, n)).encode())
            finally:
                os.close(fd)
        except OSError as e:
            failed[e.errno] += 1
print(dict(failed))
"""


class RefusalRaceTest(MountTest):
    def test_refused_renames_over_a_read_only_file_racing_writes_lose_nothing(self):
        # `mv tmp status` is refused (EACCES). Racing writes of the same accelerator, a
        # refusal once published an older copy of the record over a newer one: the
        # acknowledged write vanished from the mount, and later changes failed with EBUSY.
        folder = self.fs.path("accelerators", self.make(U1))
        racers = [subprocess.Popen([sys.executable, "-c", RACER, role, folder, str(k), "3"], stdout=subprocess.PIPE,
                                   text=True) for k, role in enumerate(["refuse"] * 3 + ["write"] * 3)]
        outputs = [p.communicate(timeout=60)[0].strip() for p in racers]
        self.assertEqual(outputs[3:], ["{}"] * 3)  # no writer was refused
        for n in range(20):
            value = '{"num": %d}' % (n + 1)
            self.assertEqual(self.write_file(os.path.join("accelerators", U1, "spec"), value), 0, n)
            self.assertEqual(self.acc(U1, "spec"), value)
        self.assertEqual(self.write_file(os.path.join("accelerators", U1, "attach"), "vm %s\n" % VM1), 0)
        self.assertEqual(self.acc(U1, "status"), "attached\n")


class ConcurrencyTest(MountTest):
    """Freshness under caching: reader processes race a writer process.

    The contract (README, "Caching"): a read that overlaps no write returns the value of the
    last write acknowledged before it began, whole. A read that overlaps a write may be cut:
    the kernel copies the bytes of an in-place write (O_TRUNC, write) into its page cache as
    it goes, as for any regular file; a value replaced by rename(2) is cut only when the
    read's own attribute refresh races another reader's (the kernel holds one size per file),
    and such a read could in principle return the value before the last acknowledged one,
    which is rare; the tests allow a few of those, counted apart."""

    WRITES = 300

    def race(self, write_value, readers=3):
        import multiprocessing
        self.make(U1)
        spec = self.fs.path("accelerators", U1, "spec")
        written = {"{}\n"} | {'{"num": %d}\n' % i for i in range(1, self.WRITES + 1)}
        context = multiprocessing.get_context("fork")
        acked, started = context.Value("i", 0), context.Value("i", 0)
        reads, stale_alone, stale_overlapping, torn_alone, torn_overlapping = (context.Value("i", 0)
                                                                               for _ in range(5))

        def count(counter):
            with counter.get_lock():
                counter.value += 1

        def writer():
            for i in range(1, self.WRITES + 1):
                started.value = i
                write_value(spec, '{"num": %d}\n' % i)
                acked.value = i

        def reader():
            while acked.value < self.WRITES:
                floor, began = acked.value, started.value
                with open(spec) as f:
                    text = f.read()
                ceiling = started.value
                count(reads)
                alone = floor == began == ceiling  # no write was in flight during the read
                if text not in written:
                    count(torn_alone if alone else torn_overlapping)
                elif not floor <= json.loads(text).get("num", 0) <= ceiling:
                    count(stale_alone if alone else stale_overlapping)

        processes = [context.Process(target=reader) for _ in range(readers)] + [context.Process(target=writer)]
        for p in processes:
            p.start()
        for p in processes:
            p.join(timeout=120)
        self.assertTrue(all(p.exitcode == 0 for p in processes), [p.exitcode for p in processes])
        self.assertGreater(reads.value, self.WRITES)
        self.assertEqual(stale_alone.value, 0, "reads older than the last acknowledged write")
        self.assertLessEqual(stale_overlapping.value, 10, "a rare older value, and only during a change")
        self.assertEqual(self.read("accelerators", U1, "spec"), '{"num": %d}\n' % self.WRITES)
        self.assertIsNone(self.fs.proc.poll())
        return torn_alone.value, torn_overlapping.value

    def test_values_replaced_by_rename_are_read_whole_and_fresh(self):
        def replace(spec, value):
            temp = os.path.join(os.path.dirname(spec), ".spec.tmp")
            with open(temp, "w") as f:
                f.write(value)
            os.replace(temp, spec)

        torn_alone, torn_overlapping = self.race(replace)
        self.assertEqual(torn_alone, 0, "whole values for reads that overlap no write")
        self.assertLessEqual(torn_overlapping, 10, "at most a rare cut read, and only during a change")

    def test_values_written_in_place_are_fresh_and_whole_when_not_overlapped(self):
        torn_alone, _ = self.race(echo_into)
        self.assertEqual(torn_alone, 0, "whole values for reads that overlap no write")

    def test_derived_files_follow_their_change_at_once(self):
        u = self.fake_uuid("GPU")
        attach = self.fs.path("accelerators", u, "attach")
        for _ in range(50):
            self.write_file(attach, "vm %s\n" % VM1)
            self.assertEqual(self.acc(u, "status"), "attached\n")
            self.assertIn("TEST_PCI", self.acc(u, "attach_handle"))
            self.write_file(attach, "\n")
            self.assertEqual(self.acc(u, "status"), "available\n")
            self.assertEqual(self.acc(u, "attach_handle"), "")
