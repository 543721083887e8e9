"""`cmake --install`, then the installed unit's commands as systemd would run them.

CI has no systemd: the test reads the installed cyborgfs.service and runs its
ExecStartPre, ExecStart, ExecReload and stop (SIGTERM to the main process) with
$NOTIFY_SOCKET, checking the notify protocol on the way. Each command gets one
more argument, --config, naming a copy of the installed config file with test
paths (the test does not write /etc).
"""
import configparser
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import unittest

from harness import Mount, Notifications, clear_mounts, is_mounted, is_served, wait_for

BUILD = os.environ.get("CYBORGFS_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))


class InstallTest(unittest.TestCase):
    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="cyborgfs-test-")
        self.addCleanup(shutil.rmtree, self.workdir, ignore_errors=True)
        self.mnt = os.path.join(self.workdir, "mnt")
        os.mkdir(self.mnt)
        self.addCleanup(clear_mounts, self.mnt)
        self.root = os.path.join(self.workdir, "root")
        r = subprocess.run(["cmake", "--install", BUILD], env=dict(os.environ, DESTDIR=self.root),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.unit = configparser.ConfigParser(strict=False, interpolation=None)
        self.unit.read(self.installed("cyborgfs.service"))
        self.config = self.write_test_config()

    def installed(self, name):
        """The path under the install root of the one installed file called `name`."""
        found = [os.path.join(d, name) for d, _, files in os.walk(self.root) if name in files]
        self.assertEqual(len(found), 1, found)
        return found[0]

    def test_the_layout(self):
        binary = self.installed("cyborgfs")
        self.assertTrue(os.access(binary, os.X_OK))
        self.assertTrue(binary.endswith("/sbin/cyborgfs"))
        self.assertTrue(self.installed("cyborgfs.service").endswith("/lib/systemd/system/cyborgfs.service"))
        self.assertEqual(self.installed("cyborgfs.conf"), os.path.join(self.root, "etc/cyborgfs/cyborgfs.conf"))
        page = self.installed("cyborgfs.8")
        self.assertTrue(page.endswith("/share/man/man8/cyborgfs.8"))
        r = subprocess.run(["groff", "-man", "-ww", "-z", page], capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stderr), (0, ""))  # renders without a warning
        self.assertTrue(self.installed("README.md").endswith("/share/doc/cyborgfs/README.md"))
        self.assertTrue(self.installed("api.md").endswith("/share/doc/cyborgfs/api.md"))  # the man page names it
        service = self.unit["Service"]
        self.assertEqual(service["Type"], "notify")
        self.assertEqual(service["Restart"], "on-failure")
        self.assertIn("--check", service["ExecStartPre"])
        # /run/cyborgfs, where the default REST API socket is, is made by systemd
        self.assertEqual(service["RuntimeDirectory"], "cyborgfs")
        for command in ("ExecStartPre", "ExecStart"):
            self.assertEqual(service[command].split()[0], binary[len(self.root):])

    def test_the_shipped_config_names_every_option_of_the_command_line(self):
        with open(self.installed("cyborgfs.conf")) as f:
            keys = set(re.findall(r"^#? ?([a-z-]+) = ", f.read(), re.M))
        help_text = subprocess.run([self.installed("cyborgfs"), "--help"], capture_output=True, text=True).stdout
        options = set(re.findall(r"--([a-z][a-z-]+)", help_text))
        not_for_a_file = {"config", "help", "version", "check", "foreground", "fake-devices", "mount-option"}
        self.assertEqual(options - not_for_a_file - keys, set())

    def test_start_reload_and_stop_as_systemd_does(self):
        self.leave_a_dead_mount()
        pre = self.run_unit_command("ExecStartPre")
        self.assertEqual(pre.returncode, 0, pre.stderr)
        self.assertIn("ready to serve %s" % self.mnt, pre.stdout)
        self.assertIn("cleared the dead cyborgfs mount on %s" % self.mnt, pre.stderr)

        notify = Notifications(self.workdir)
        self.addCleanup(notify.close)
        log = open(os.path.join(self.workdir, "service.log"), "w+")
        self.addCleanup(log.close)
        main = subprocess.Popen(self.command("ExecStart"), stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, NOTIFY_SOCKET=notify.path))
        self.addCleanup(lambda: main.poll() is not None or (main.kill(), main.wait()))
        wait_for(lambda: "READY=1" in notify.received() or main.poll() is not None, what="READY=1")
        self.assertIn("STATUS=serving %s" % self.mnt, notify.received())
        self.assertTrue(is_served(self.mnt))  # live when READY=1 came
        # the REST API is served from the config file's socket, 0666
        sock = os.path.join(self.workdir, "api.sock")
        self.assertEqual(stat.S_IMODE(os.stat(sock).st_mode), 0o666)
        got = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", sock,
                              "http://localhost/accelerators"], capture_output=True, text=True, timeout=30)
        self.assertEqual(got.stdout, "200")

        # reload: the log level and the audit file follow the config file
        audit = os.path.join(self.workdir, "audit.log")
        self.edit_config(**{"log-level": '"warn"', "audit-log": '"%s"' % audit})
        before = len(notify.received())
        reload = subprocess.run(self.unit["Service"]["ExecReload"].replace("$MAINPID", str(main.pid)), shell=True)
        self.assertEqual(reload.returncode, 0)
        wait_for(lambda: notify.received()[before:] == ["RELOADING=1", "READY=1"], what="the reload")
        uuid = "8e45a2ea-5364-4b0d-a252-bf8becaa606e"
        os.mkdir(os.path.join(self.mnt, "accelerators", uuid))
        with open(audit) as f:
            self.assertIn('file="mkdir" old="" new="%s"' % uuid, f.read())
        os.rename(audit, audit + ".1")  # logrotate
        subprocess.run(self.unit["Service"]["ExecReload"].replace("$MAINPID", str(main.pid)), shell=True)
        wait_for(lambda: notify.received().count("RELOADING=1") == 2 and notify.received()[-1] == "READY=1",
                 what="the second reload")
        os.rmdir(os.path.join(self.mnt, "accelerators", uuid))
        with open(audit) as f:
            self.assertIn('file="rmdir"', f.read())
        log.seek(0)
        self.assertIn("SIGHUP: reloading: log level warn, log file as at start, audit log %s, rescan interval 60 s" % audit, log.read())

        # stop: SIGTERM to the main process (KillMode=mixed)
        self.assertEqual(self.unit["Service"]["KillMode"], "mixed")
        main.send_signal(signal.SIGTERM)
        self.assertEqual(main.wait(timeout=30), 0)
        self.assertIn("STOPPING=1", notify.received())
        self.assertFalse(is_mounted(self.mnt))
        self.assertEqual(self.run_unit_command("ExecStartPre").returncode, 0)  # and it may start again

    def test_a_bad_config_file_stops_the_start_before_mounting(self):
        self.edit_config(**{"sync": '"sometimes"'})
        r = self.run_unit_command("ExecStartPre")
        self.assertEqual(r.returncode, 2)
        self.assertIn("sometimes", r.stderr)
        self.edit_config(**{"sync": '"normal"', "colour": '"blue"'})
        r = self.run_unit_command("ExecStart")
        self.assertEqual(r.returncode, 2)
        self.assertIn("colour", r.stderr)
        self.assertFalse(is_mounted(self.mnt))

    # --- helpers

    def write_test_config(self):
        """The installed config file with this test's paths; returns its path."""
        path = os.path.join(self.workdir, "cyborgfs.conf")
        shutil.copy(self.installed("cyborgfs.conf"), path)
        self.config = path
        self.edit_config(mountpoint='"%s"' % self.mnt, db='"%s"' % os.path.join(self.workdir, "cyborgfs.db"),
                         drivers='"fake"', **{"api-socket": '"%s"' % os.path.join(self.workdir, "api.sock")})
        return path

    def edit_config(self, **values):
        """Sets key = value in the test's config file (uncommenting or adding the key)."""
        with open(self.config) as f:
            text = f.read()
        for key, value in values.items():
            line = "%s = %s" % (key, value)
            text, found = re.subn(r"^#? ?%s = .*$" % re.escape(key), line, text, flags=re.M)
            if not found:
                text += line + "\n"
        with open(self.config, "w") as f:
            f.write(text)

    def command(self, name):
        """The unit's `name` command with the installed binary, and --config."""
        words = self.unit["Service"][name].split()
        return [self.root + words[0], *words[1:], "--config", self.config]

    def run_unit_command(self, name):
        return subprocess.run(self.command(name), capture_output=True, text=True, timeout=60)

    def leave_a_dead_mount(self):
        m = Mount(self.workdir, db=os.path.join(self.workdir, "cyborgfs.db"))
        m.crash(clear=False)
        self.assertTrue(is_mounted(self.mnt))
        m.proc.wait(timeout=15)


if __name__ == "__main__":
    unittest.main()
