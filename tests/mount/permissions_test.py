"""Who may change what: owner/group/mode, enforced by the kernel (default_permissions).

Everyone may read; only root and members of --admin-group may write, create or
remove. The other users are real ones, by setpriv(1): nobody (65534), with or
without the admin group.
"""
import json
import os
import subprocess
import sys
import unittest

from harness import MountTest

U1 = "8e45a2ea-5364-4b0d-a252-bf8becaa606e"
U2 = "eaaf1c04-ced2-40e4-89a2-87edded06d64"
VM = "11111111-2222-4333-8444-555555555555"
NOBODY = 65534
ADMINS = 4242  # a group number that needs no name

# Each mutation a user can try, as Python run by that user in the mount.
MUTATIONS = {
    "write spec": "open('accelerators/{u}/spec', 'w').write('{{\"num\": 2}}')",
    "write name": "open('accelerators/{u}/name', 'w').write('taken-over')",
    "attach": "open('accelerators/{u}/attach', 'w').write('vm %s')" % VM,
    "detach": "open('accelerators/{attached}/attach', 'w').write('')",
    "append to spec": "open('accelerators/{u}/spec', 'a').write(' ')",
    "truncate spec": "os.truncate('accelerators/{u}/spec', 0)",
    "mkdir": "os.mkdir('accelerators/%s')" % U2,
    "rmdir": "os.rmdir('accelerators/{u}')",
    "create": "open('create', 'w').write('{{\"name\": \"mine\"}}')",
    "rescan": "open('rescan', 'w').write('1')",
    "scratch file": "open('accelerators/{u}/spec.tmp', 'w').write('{{}}')",
    "scratch folder": "os.mkdir('accelerators/{u}/.tmp')",
    "rename over spec": "os.rename('accelerators/{u}/name', 'accelerators/{u}/spec')",
    "unlink": "os.unlink('accelerators/{u}/spec')",
    "symlink in by-name": "os.symlink('../accelerators/{u}', 'by-name/mine')",
    "chmod": "os.chmod('accelerators/{u}/spec', 0o666)",
    "chown": "os.chown('accelerators/{u}/spec', %d, %d)" % (NOBODY, NOBODY),
}
READS = [
    "sorted(os.listdir('accelerators'))", "sorted(os.listdir('by-name'))",
    "open('accelerators/{u}/spec').read()", "open('accelerators/{u}/status').read()",
    "open('accelerators/{attached}/attach').read()", "open('stats').read()", "open('drivers').read()",
    "os.readlink('by-name/{u}')",
]


class PermissionsTest(MountTest):
    def setUp(self):
        super().setUp()
        os.chmod(self.workdir, 0o755)  # mkdtemp's 0700 would keep others out before the mount
        self.restart("--admin-group", str(ADMINS))
        os.mkdir(self.fs.path("accelerators", U1))
        self.attached = self.fake_uuid("GPU")
        self.ok("echo vm %s > accelerators/%s/attach" % (VM, self.attached))

    def as_user(self, code, groups=()):
        """Runs `code` (Python, in the mount) as nobody with `groups`; returns its output."""
        program = "import os, sys, json\nos.chdir(%r)\n%s" % (self.fs.mnt, code)
        r = subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                            "--groups=" + ",".join(map(str, groups)) if groups else "--clear-groups",
                            sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def try_each(self, actions, groups=()):
        """action name -> errno name ("ok" for success) for each action run as nobody."""
        code = "results = {}\n"
        for name, action in actions.items():
            code += ("try:\n    %s\n    results[%r] = 'ok'\nexcept OSError as e:\n"
                     "    results[%r] = __import__('errno').errorcode[e.errno]\n") % (
                action.format(u=U1, attached=self.attached), name, name)
        code += "print(json.dumps(results))"
        return json.loads(self.as_user(code, groups))

    def state(self):
        return {u: self.snapshot(u) for u in self.uuids()}, sorted(os.listdir(self.fs.path("by-name")))

    def test_the_tree_says_its_policy_in_owner_group_and_mode(self):
        expect = {"accelerators": 0o40775, "by-name": 0o40555, "create": 0o100220, "rescan": 0o100220,
                  "stats": 0o100444, "accelerators/%s" % U1: 0o40775, "accelerators/%s/spec" % U1: 0o100664,
                  "accelerators/%s/attach" % U1: 0o100664, "accelerators/%s/status" % U1: 0o100444}
        for path, mode in expect.items():
            st = os.stat(self.fs.path(path))
            self.assertEqual((oct(st.st_mode), st.st_uid, st.st_gid), (oct(mode), 0, ADMINS), path)
        with open("/proc/self/mountinfo") as mountinfo:
            options = next(line for line in mountinfo if line.split()[4] == self.fs.mnt).split(" - ")[1]
        self.assertIn("default_permissions", options)
        self.assertIn("allow_other", options)

    def test_others_may_read_everything(self):
        got = self.as_user("print(json.dumps([%s]))" % ", ".join(r.format(u=U1, attached=self.attached)
                                                                  for r in READS))
        self.assertEqual(json.loads(got)[:5], [self.uuids(), sorted(os.listdir(self.fs.path("by-name"))),
                                               "{}\n", "available\n", "vm %s\n" % VM])

    def test_others_get_eacces_for_every_change_and_change_nothing(self):
        before = self.state()
        results = self.try_each(MUTATIONS)
        owner_only = {"chmod", "chown"}  # only a file's owner may change its mode or owner
        self.assertEqual({k: v for k, v in results.items() if k not in owner_only},
                         {k: "EACCES" for k in MUTATIONS if k not in owner_only})
        self.assertEqual({results[k] for k in owner_only}, {"EPERM"})
        self.assertEqual(self.state(), before)
        self.assertEqual(self.acc(U1, "error"), "")  # refused by the kernel: the daemon never saw them

    def test_members_of_the_admin_group_may_change_everything(self):
        changes = {k: MUTATIONS[k] for k in ["write spec", "write name", "attach", "mkdir", "create",
                                             "scratch file", "scratch folder"]}
        self.assertEqual(self.try_each(changes, groups=[ADMINS]), {k: "ok" for k in changes})
        self.assertEqual(self.acc(U1, "spec"), '{"num": 2}')
        self.assertEqual(self.acc(U1, "attach"), "vm %s" % VM)
        self.assertIn(U2, self.uuids())
        self.assertIn("mine", os.listdir(self.fs.path("by-name")))
        # and as Ansible does: a temp file renamed over the target, then the removals
        more = {"rename": "open('accelerators/{u}/.x', 'w').write('{{\"num\": 3}}')\n    "
                          "os.rename('accelerators/{u}/.x', 'accelerators/{u}/spec')",
                "detach": MUTATIONS["detach"], "rmdir": "os.rmdir('accelerators/%s')" % U2}
        self.assertEqual(self.try_each(more, groups=[ADMINS]), {k: "ok" for k in more})
        self.assertEqual(self.acc(U1, "spec"), '{"num": 3}')
        self.assertNotIn(U2, self.uuids())

    def test_every_change_and_refusal_is_audited_with_who_asked(self):
        self.try_each({"spec": MUTATIONS["write spec"],
                       "busy": "os.write(os.open('accelerators/{attached}/attach', os.O_WRONLY), b'host elsewhere')"}, groups=[ADMINS])
        audit = self.fs.audit()
        spec = [line for line in audit if 'file="spec"' in line]
        self.assertEqual(len(spec), 1, audit)
        self.assertRegex(spec[0], r'^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z uid=65534 pid=\d+ command="python3" '
                                  r'accelerator="%s" file="spec" old="\{\}\\n" new="\{\\"num\\": 2\}"$' % U1)
        busy = [line for line in audit if 'file="attach"' in line and "uid=65534" in line]
        self.assertEqual(len(busy), 1, audit)
        self.assertIn('accelerator="%s" file="attach" error="attach: attached to vm %s; detach it first' %
                      (self.attached, VM), busy[0])
        self.assertIn('uid=0 pid=', [line for line in audit if 'file="attach"' in line][0])  # root's attach in setUp

    def test_the_right_to_write_is_checked_at_open(self):
        # A descriptor root opened for writing works in nobody's hands (as in sysfs);
        # nobody cannot open one.
        fd = os.open(self.fs.path("accelerators", U1, "name"), os.O_WRONLY | os.O_TRUNC)
        try:
            r = subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups",
                                sys.executable, "-c", "import os; os.write(%d, b'handed-over')" % fd],
                               pass_fds=[fd], capture_output=True, text=True, timeout=60)
        finally:
            os.close(fd)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.acc(U1, "name"), "handed-over")
        self.assertEqual(self.try_each({"open": MUTATIONS["write name"]}), {"open": "EACCES"})

    def test_an_unknown_admin_group_ends_it_before_mounting(self):
        r = subprocess.run([self.fs.proc.args[0], "-f", "--db", os.path.join(self.workdir, "x.db"),
                            "--admin-group", "no-such-group", os.path.join(self.workdir, "mnt2")],
                           capture_output=True, text=True, timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--admin-group: no group named no-such-group", r.stderr)


if __name__ == "__main__":
    unittest.main()
