"""Every tool that writes files, with its default settings, against the real mount.

Shells, coreutils, sed, vim, ed, rsync and python write the accelerator files
in place or through a scratch file renamed over them; each case checks the
value read back, and for bad content the errno, the `error` file and that
nothing changed. Ansible and Puppet have their own module (config_tools_test).
"""
import errno
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import unittest

from harness import LISTED, MountTest

VM1 = "11111111-2222-4333-8444-555555555555"
VM2 = "66666666-7777-4888-9999-aaaaaaaaaaaa"


def big_spec(size):
    """A valid spec of exactly `size` bytes, pretty-printed over many lines."""
    head = '{\n  "num": 1,\n  "device_type": "GPU",\n  "acc_capability": {\n    "lines": [\n'
    tail = '\n    ]\n  }\n}\n'
    body = []
    used = len(head) + len(tail)
    while used < size:
        line = '      "%s"' % ("x" * 60)
        sep = ",\n" if body else ""
        if used + len(sep) + len(line) > size:
            room = size - used - len(sep) - len('      ""')
            if room < 0:
                break
            line = '      "%s"' % ("y" * room)
        body.append(line)
        used += len(sep) + len(line)
    text = head + ",\n".join(body) + tail
    text = text[:-1] + " " * (size - len(text)) + "\n"
    assert len(text) == size and json.loads(text)
    return text


class ToolTest(MountTest):
    def setUp(self):
        super().setUp()
        self.u = self.fake_uuid("GPU")
        self.dir = os.path.join("accelerators", self.u)
        self.spec = os.path.join(self.dir, "spec")
        self.attach = os.path.join(self.dir, "attach")
        self.name = os.path.join(self.dir, "name")
        self.src = os.path.join(self.workdir, "src")
        os.makedirs(self.src)

    def local(self, name, text):
        """A file outside the mount, dated in the past (rsync's quick check skips a
        file of the same size and modification time)."""
        path = os.path.join(self.src, name)
        with open(path, "w") as f:
            f.write(text)
        os.utime(path, (1000000000, 1000000000))
        return path

    def scratch_names(self):
        return sorted(set(os.listdir(self.fs.path(self.dir))) - LISTED)

    def assertRefusedKeeping(self, before, *phrases):
        """The accelerator is unchanged and its `error` file names each phrase."""
        self.assertEqual(self.snapshot(self.u), before)
        error = self.acc(self.u, "error")
        for phrase in phrases:
            self.assertIn(phrase, error)


class ShellTest(ToolTest):
    def test_builtin_echo_and_printf_with_redirections_in_bash_and_dash(self):
        for shell in ["bash", "dash"]:
            n = 2 if shell == "bash" else 3
            rc, _, err = self.sh("""echo '{"num": %d}' > %s""" % (n, self.spec), shell)
            self.assertEqual(rc, 0, err)
            self.assertEqual(self.acc(self.u, "spec"), '{"num": %d}\n' % n)
            rc, _, err = self.sh("printf 'vm %%s\\n' %s > %s && echo > %s" % (VM1, self.attach, self.attach), shell)
            self.assertEqual(rc, 0, err)
            self.assertEqual(self.acc(self.u, "status"), "available\n")
            rc, _, err = self.sh("echo %s-gpu >> %s" % (shell, self.name), shell)  # one value per write
            self.assertEqual(rc, 0, err)
            self.assertEqual(self.acc(self.u, "name"), "%s-gpu\n" % shell)
            rc, _, err = self.sh("""echo '{"num": 0}' > %s""" % self.spec, shell)
            self.assertNotEqual(rc, 0, shell)
            self.assertIn("I/O error" if shell == "dash" else "Invalid argument", err)
            self.assertEqual(self.acc(self.u, "spec"), '{"num": %d}\n' % n)

    def test_bin_echo_tee_and_dd_with_and_without_notrunc(self):
        self.ok("""/bin/echo '{"num": 1, "device_type": "A LONG TYPE"}' > %s""" % self.spec)
        self.ok("""echo '{"num": 2}' | tee %s > /dev/null""" % self.spec)
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 2}\n')
        self.ok("""echo '{"num": 3, "device_type": "LONGER STILL"}' | dd of=%s status=none""" % self.spec)
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 3, "device_type": "LONGER STILL"}\n')
        self.ok("""echo '{"num": 4}' | dd of=%s conv=notrunc status=none""" % self.spec)
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 4}\n')
        self.fails("""echo '{"num": 4]' | tee %s""" % self.spec, "Invalid argument")
        self.fails("""/bin/echo '{"num": -4}' > %s""" % self.spec, "Invalid argument")
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 4}\n')

    def test_truncate_then_a_write_sets_the_value(self):
        self.ok("""truncate -s 0 %s && printf '{"num": 5}' | dd of=%s conv=notrunc status=none"""
                % (self.spec, self.spec))
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 5}')
        fd = os.open(self.fs.path(self.spec), os.O_WRONLY)  # vim's way: ftruncate(0), write, fsync
        try:
            os.ftruncate(fd, 0)
            os.write(fd, b'{"num": 6}\n')
            os.fsync(fd)
        finally:
            os.close(fd)
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 6}\n')

    def test_cp_of_a_file_over_spec_and_attach(self):
        self.ok("cp %s %s" % (self.local("spec.json", '{"num": 7}\n'), self.spec))
        self.ok("cp %s %s" % (self.local("attach", "vm %s\n" % VM1), self.attach))
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 7}\n')
        self.assertEqual(self.acc(self.u, "attach"), "vm %s\n" % VM1)

    def test_a_spec_over_128k_is_efbig_and_one_under_64k_in_pieces_applies(self):
        before = self.snapshot(self.u)
        self.fails("cat %s > %s" % (self.local("big.json", big_spec(130 * 1024)), self.spec), "File too large")
        self.assertRefusedKeeping(before, "spec: ", "65536")
        near = big_spec(64 * 1024 - 10)
        self.ok("dd if=%s of=%s bs=4096 status=none" % (self.local("near.json", near), self.spec))
        self.assertEqual(self.acc(self.u, "spec"), near)
        self.assertEqual(os.stat(self.fs.path(self.spec)).st_size, len(near))


class EditorTest(ToolTest):
    def test_sed_in_place_on_spec(self):
        self.ok("""echo '{"num": 1, "device_type": "GPU"}' > %s""" % self.spec)
        self.ok("sed -i 's/GPU/FPGA/' " + self.spec)
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 1, "device_type": "FPGA"}\n')
        self.assertEqual(self.acc(self.u, "device_type"), "FPGA\n")
        before = self.snapshot(self.u)
        self.fails("sed -i 's/1/0/' " + self.spec, "Invalid argument")
        self.assertRefusedKeeping(before, "spec (renamed from sed", '"num" must be a positive integer')
        self.assertEqual(self.scratch_names(), [])  # sed removed its temp file

    def test_sed_in_place_on_attach(self):
        self.ok("echo vm %s > %s" % (VM1, self.attach))
        before = self.snapshot(self.u)
        self.fails("sed -i 's/%s/%s/' %s" % (VM1, VM2, self.attach), "Device or resource busy")
        self.assertRefusedKeeping(before, "attach (renamed from sed", "attached to vm " + VM1)
        self.fails("sed -i 's/^vm/lxc/' " + self.attach, "Invalid argument")
        self.ok("sed -i 's/.*//' " + self.attach)  # an empty line detaches
        self.assertEqual(self.acc(self.u, "attach"), "")
        self.assertEqual(self.acc(self.u, "status"), "available\n")

    def test_vim_ex_mode_with_defaults(self):
        self.ok("""echo '{"num": 1, "device_type": "GPU"}' > %s""" % self.spec)
        self.ok("vim -es -c '%%s/GPU/FPGA/' -c 'wq' %s < /dev/null" % self.spec)
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 1, "device_type": "FPGA"}\n')
        for settings in ["-u DEFAULTS", "-c 'set backupcopy=no'", "-c 'set backupcopy=yes'"]:  # interactive vim's
            self.ok("vim -Es %s -c '%%s/FPGA/QAT/' -c 'wq' %s < /dev/null" % (settings, self.spec))
            self.assertEqual(self.acc(self.u, "spec"), '{"num": 1, "device_type": "QAT"}\n')
            self.ok("""echo '{"num": 1, "device_type": "FPGA"}' > %s""" % self.spec)
        before = self.snapshot(self.u)
        rc, _, _ = self.sh("vim -es -c '%%s/FPGA/\"/' -c 'wq' %s < /dev/null" % self.spec)
        self.assertNotEqual(rc, 0)
        self.assertRefusedKeeping(before, "spec: line 2, column")
        self.assertEqual(self.scratch_names(), [])  # vim's test file and backup are gone

    def test_ed(self):
        self.ok("""echo '{"num": 1, "device_type": "GPU"}' > %s""" % self.spec)
        self.ok("printf ',s/GPU/QAT/\\nw\\nq\\n' | ed -s " + self.spec)
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 1, "device_type": "QAT"}\n')
        before = self.snapshot(self.u)
        rc, _, _ = self.sh("printf ',s/QAT/\"/\\nw\\nq\\n' | ed -s " + self.spec)
        self.assertNotEqual(rc, 0)
        self.assertRefusedKeeping(before, "spec: line 2, column")

    def test_perl_in_place(self):
        self.ok("""echo '{"num": 1}' > %s && perl -pi -e 's/1/2/' %s""" % (self.spec, self.spec))
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 2}\n')

    def test_tools_that_remove_the_target_first_get_eperm(self):
        # install, cp --remove-destination and mv from another filesystem unlink the
        # target before creating it anew; a listed file cannot be removed.
        source = self.local("spec.json", '{"num": 3}\n')
        before = self.snapshot(self.u)
        for script in ["install -m 644 %s %s", "cp --remove-destination %s %s", "mv %s %s"]:
            self.fails(script % (source, self.spec), "Operation not permitted")
        self.assertEqual(self.snapshot(self.u), before)

    def test_mv_of_a_scratch_file_over_spec(self):
        self.ok("""echo '{"num": 8}' > %s/new.json && mv %s/new.json %s""" % (self.dir, self.dir, self.spec))
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 8}\n')
        self.assertEqual(self.scratch_names(), [])

    def test_python_open_for_writing_and_atomic_replace(self):
        with open(self.fs.path(self.spec), "w") as f:
            json.dump({"num": 9}, f)
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 9}')
        temp = self.fs.path(self.dir, ".spec.tmp")
        with open(temp, "w") as f:
            json.dump({"num": 10}, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, self.fs.path(self.spec))
        self.assertEqual(self.acc(self.u, "spec"), '{\n  "num": 10\n}')
        with open(temp, "w") as f:
            f.write("{")
        with self.assertRaises(OSError) as refused:
            os.replace(temp, self.fs.path(self.spec))
        self.assertEqual(refused.exception.errno, errno.EINVAL)
        self.assertEqual(self.read(self.dir, ".spec.tmp"), "{")  # the scratch stays
        self.assertIn("incomplete JSON document", self.acc(self.u, "error"))


class RsyncTest(ToolTest):
    def test_rsync_to_the_mount_default_and_inplace(self):
        self.ok("rsync %s %s" % (self.local("spec", '{"num": 11}\n'), self.spec))
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 11}\n')
        self.assertEqual(self.scratch_names(), [])
        self.ok("rsync --inplace %s %s" % (self.local("spec", '{"num": 12, "device_type": "GPU"}\n'), self.spec))
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 12, "device_type": "GPU"}\n')

    def test_rsync_inplace_that_skips_unchanged_blocks(self):
        text = big_spec(20000)
        self.ok("cat %s > %s" % (self.local("spec", text), self.spec))
        changed = text[:10000] + text[10000:10060].replace("x", "z") + text[10060:]
        self.ok("rsync --inplace --no-whole-file %s %s" % (self.local("spec", changed), self.spec))
        self.assertEqual(self.acc(self.u, "spec"), changed)
        shorter = big_spec(15000)
        self.ok("rsync --inplace --no-whole-file %s %s" % (self.local("spec", shorter), self.spec))
        self.assertEqual(self.acc(self.u, "spec"), shorter)

    def test_rsync_with_bad_content_fails_and_changes_nothing(self):
        before = self.snapshot(self.u)
        self.fails("rsync %s %s" % (self.local("spec", '{"num": [}\n'), self.spec), "Invalid argument")
        self.assertRefusedKeeping(before, "renamed from .spec.", "line 1, column 10")


class ReaderTest(ToolTest):
    def setUp(self):
        super().setUp()
        self.value = big_spec(5000)
        self.ok("cat %s > %s" % (self.local("spec", self.value), self.spec))

    def test_every_reader_gets_the_whole_value(self):
        path = self.fs.path(self.spec)
        self.assertEqual(os.stat(path).st_size, len(self.value))
        self.assertEqual(self.ok("cat " + self.spec), self.value)
        self.assertEqual(self.ok("head -c 7 " + self.spec), self.value[:7])
        with open(path) as f:
            self.assertEqual(f.read(), self.value)
        for copy in ["shutil", "cp", "rsync"]:
            target = os.path.join(self.workdir, "copy-" + copy)
            if copy == "shutil":
                shutil.copyfile(path, target)  # sendfile
            else:
                self.ok("%s %s %s" % (copy, self.spec, target))
            with open(target) as f:
                self.assertEqual(f.read(), self.value, copy)

    def test_stat_size_equals_what_is_read_for_every_file(self):
        for name in os.listdir(self.fs.path(self.dir)):
            path = self.fs.path(self.dir, name)
            with open(path, "rb") as f:
                self.assertEqual(os.stat(path).st_size, len(f.read()), name)


class ScratchTest(ToolTest):
    def test_a_scratch_file_is_a_regular_file_in_memory(self):
        path = self.fs.path(self.dir, "sedAb12Cd")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            self.assertEqual(os.write(fd, b"hello world"), 11)
            os.fsync(fd)
            os.fchmod(fd, 0o644)
            os.fchown(fd, 1234, 5678)
            self.assertEqual(os.pread(fd, 5, 6), b"world")
            os.ftruncate(fd, 5)
        finally:
            os.close(fd)
        os.utime(path, (1000000000, 1000000000))
        st = os.stat(path)
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_mtime),
                         (0o644, 1234, 5678, 5, 1000000000))
        self.assertEqual(self.read(self.dir, "sedAb12Cd"), "hello")
        self.assertEqual(self.errno_of(lambda: os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)), errno.EEXIST)
        self.ok("echo more >> %s/sedAb12Cd" % self.dir)
        self.assertEqual(self.read(self.dir, "sedAb12Cd"), "hellomore\n")
        self.assertEqual(self.scratch_names(), ["sedAb12Cd"])
        self.ok("mv %s/sedAb12Cd %s/other && rm %s/other" % (self.dir, self.dir, self.dir))
        self.assertEqual(self.scratch_names(), [])

    def test_scratch_folders_can_be_made_and_removed(self):
        lock = self.fs.path(self.dir, "spec20261125-42-abc.lock")
        os.mkdir(lock)
        self.assertTrue(os.path.isdir(lock))
        self.assertEqual(os.listdir(lock), [])
        self.assertEqual(self.errno_of(lambda: os.mkdir(lock)), errno.EEXIST)
        self.assertEqual(self.errno_of(lambda: open(os.path.join(lock, "x"), "w")), errno.EACCES)
        self.assertEqual(self.errno_of(lambda: os.unlink(lock)), errno.EISDIR)
        os.rmdir(lock)
        self.assertEqual(self.scratch_names(), [])

    def test_scratch_files_are_never_stored_and_gone_after_a_restart(self):
        self.ok("echo keep > %s/tmp-one && mkdir %s/tmp-dir" % (self.dir, self.dir))
        self.assertEqual(self.scratch_names(), ["tmp-dir", "tmp-one"])
        db = sqlite3.connect(self.fs.db)
        dump = "\n".join(db.iterdump())
        db.close()
        self.assertNotIn("tmp-one", dump)
        self.restart(crash=True)
        self.assertEqual(self.scratch_names(), [])

    def test_scratch_files_are_bounded(self):
        path = self.fs.path(self.dir, "big")
        self.assertEqual(self.write_file(os.path.join(self.dir, "big"), b"x" * (1024 * 1024 + 1),
                                         flags=os.O_WRONLY | os.O_CREAT), errno.EFBIG)
        os.unlink(path)
        for n in range(64):
            open(self.fs.path(self.dir, "f%d" % n), "w").close()
        self.assertEqual(self.errno_of(lambda: open(self.fs.path(self.dir, "one-more"), "w")), errno.ENOSPC)
        self.assertEqual(self.errno_of(lambda: os.mkdir(self.fs.path(self.dir, "one-more"))), errno.ENOSPC)

    def test_a_failed_commit_keeps_the_scratch_and_the_old_value(self):
        before = self.snapshot(self.u)
        scratch = self.fs.path(self.dir, "tmp")
        for bad in ['{"num": 1', "", "   \n", '{"acc_specs": {"num": 1}}']:
            with open(scratch, "w") as f:
                f.write(bad)
            self.assertEqual(self.errno_of(lambda: os.rename(scratch, self.fs.path(self.spec))), errno.EINVAL)
            self.assertEqual(self.read(self.dir, "tmp"), bad)
            self.assertRefusedKeeping(before, "spec (renamed from tmp): ")
        # mv reports EINVAL from rename(2) in its own words; `error` has the reason.
        self.fails("mv %s/tmp %s" % (self.dir, self.spec), "to a subdirectory of itself")

    def test_a_process_holding_the_old_file_keeps_working(self):
        with open(self.fs.path(self.spec)) as reader:
            self.assertEqual(reader.read(), "{}\n")
            self.ok("""echo '{"num": 13}' > %s/new && mv %s/new %s""" % (self.dir, self.dir, self.spec))
            reader.seek(0)
            self.assertEqual(reader.read(), '{"num": 13}\n')
        self.assertNotIn(".fuse_hidden", "".join(self.scratch_names()))

    def test_a_folder_with_scratch_files_cannot_be_removed(self):
        u = self.make("0a1b2c3d-0000-4000-8000-000000000001")
        self.ok("touch accelerators/%s/leftover" % u)
        self.fails("rmdir accelerators/" + u, "Directory not empty")
        self.ok("rm accelerators/%s/leftover && rmdir accelerators/%s" % (u, u))
        self.assertNotIn(u, self.uuids())

    def test_scratch_files_stay_in_accelerator_folders(self):
        self.ok("echo x > %s/tmp" % self.dir)
        self.fails("mv %s/tmp accelerators/x" % self.dir, "Permission denied")
        self.fails("mv %s/tmp by-name/x" % self.dir, "Permission denied")
        self.fails("mv %s/tmp %s/status" % (self.dir, self.dir), "Permission denied")
        self.assertEqual(self.scratch_names(), ["tmp"])

    def test_random_scratch_operations_never_crash_or_store_garbage(self):
        import random
        rng = random.Random(3)
        folder = self.fs.path(self.dir)
        names = ["a", "b", ".c.XyZ", "sed123", "d.lock"]
        contents = [b"", b"{}", b'{"num": 2}\n', b"vm " + VM1.encode(), b"\n", b"{" * 50, b"\xff\0",
                    b'{"num": 0}', b"x" * 5000, b"host testhost\n", b"gpu-%d\n",
                    b'{"num": %d}\n', b'{"num": %d}']
        allowed = {errno.ENOENT, errno.EEXIST, errno.EISDIR, errno.ENOTDIR, errno.EINVAL, errno.EBUSY,
                   errno.EFBIG, errno.ENOSPC, errno.EACCES, errno.ENOTEMPTY}
        commits = 0
        for step in range(600):
            name = os.path.join(folder, rng.choice(names))
            other = os.path.join(folder, rng.choice(names + ["spec", "attach", "name", "status"]))
            data = rng.choice(contents).replace(b"%d", str(step).encode())
            op = rng.choices(range(6), weights=[4, 4, 1, 1, 1, 1])[0]
            try:
                if op == 0:
                    patch = rng.random() < 0.3 and os.path.exists(name)
                    with open(name, "r+b" if patch else "wb") as f:
                        f.seek(rng.randrange(3) if patch else 0)
                        f.write(data)
                        f.truncate(rng.randrange(20)) if rng.random() < 0.2 else None
                elif op == 1:
                    os.rename(name, other)
                    commits += os.path.basename(other) in LISTED
                elif op == 2:
                    os.unlink(name)
                elif op == 3:
                    os.mkdir(name)
                elif op == 4:
                    os.rmdir(name)
                else:
                    with open(name, "rb") as f:
                        f.read()
            except OSError as e:
                self.assertIn(e.errno, allowed, "step %d op %d %s -> %s: %s" % (step, op, name, other, e))
            spec = self.acc(self.u, "spec")
            self.assertIsInstance(json.loads(spec), dict)
            self.assertRegex(self.acc(self.u, "attach"), r"^((vm [0-9a-f-]{36}|host testhost)\n?)?$")
        self.assertGreater(commits, 10)  # renames over listed files that were applied
        self.assertIsNone(self.fs.proc.poll())


if __name__ == "__main__":
    unittest.main()
