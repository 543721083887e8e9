"""Ansible (ansible-core) and Puppet, with their default settings, against the real mount.

Each runs twice: the first run changes the files, the second finds nothing to
change. Bad content fails the run with the errno text and changes nothing.
The playbook and manifest of the README are run as written there.
"""
import json
import os
import re
import subprocess
import unittest

from harness import HOST, MountTest

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
README_ACC = "/mnt/cyborg/accelerators/e55ba0d9-3fcb-59e9-97af-5e28e0a6f71a"
VM1 = "11111111-2222-4333-8444-555555555555"
VM2 = "66666666-7777-4888-9999-aaaaaaaaaaaa"


def readme_block(language, section="## Using cyborgfs from Ansible and Puppet"):
    """The first fenced block in `language` of the README's `section` (and after)."""
    with open(README) as f:
        text = f.read()
    return re.search(r"```%s\n(.*?)```" % language, text[text.index(section):], re.S).group(1)


def run_tool(workdir, args, env):
    r = subprocess.run(args, cwd=workdir, env=dict(os.environ, **env), capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def run_playbook(workdir, text):
    """Runs playbook `text`; returns (exit status, {task name: result}) (the json callback's per-host result)."""
    path = os.path.join(workdir, "play.yml")
    with open(path, "w") as f:
        f.write(text)
    tmp = os.path.join(workdir, "ansible-tmp")
    rc, out, err = run_tool(
        workdir, ["ansible-playbook", "-i", "localhost,", path],
        {"ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_LOCAL_TEMP": tmp, "ANSIBLE_REMOTE_TEMP": tmp,
         "ANSIBLE_NOCOLOR": "1", "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
         "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0"})
    try:
        report = json.loads(out)
    except ValueError:
        raise AssertionError("ansible-playbook gave no report (exit %d): %s %s" % (rc, out, err))
    results = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            results[task["task"]["name"]] = task["hosts"]["localhost"]
    return rc, results


class ConfigToolTest(MountTest):
    def setUp(self):
        super().setUp()
        self.u = self.fake_uuid("GPU")
        self.acc_dir = self.fs.path("accelerators", self.u)

    def run_tool(self, args, env):
        return run_tool(self.workdir, args, env)

    def playbook(self, text):
        return run_playbook(self.workdir, text)

    def assertPlaybookConverges(self, text):
        rc, first = self.playbook(text)
        self.assertEqual(rc, 0, first)
        self.assertTrue(all(r["changed"] for r in first.values()), first)
        rc, second = self.playbook(text)
        self.assertEqual(rc, 0, second)
        self.assertEqual([name for name, r in second.items() if r["changed"]], [])

    def puppet(self, manifest):
        """puppet apply `manifest`; returns (exit status with --detailed-exitcodes, output)."""
        path = os.path.join(self.workdir, "site.pp")
        with open(path, "w") as f:
            f.write(manifest)
        state = os.path.join(self.workdir, "puppet")
        dirs = []
        for d in ["vardir", "confdir", "codedir", "logdir", "rundir", "publicdir"]:
            dirs += ["--" + d, os.path.join(state, d)]
        rc, out, err = self.run_tool(["puppet", "apply", "--detailed-exitcodes", "--color=false", *dirs, path], {})
        return rc, out + err


class AnsibleTest(ConfigToolTest):
    def play(self, *tasks):
        return ("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
                + "".join(tasks))

    def task(self, name, module, **args):
        lines = "".join("        %s: %s\n" % (k, json.dumps(v)) for k, v in args.items())
        return "    - name: %s\n      ansible.builtin.%s:\n%s" % (name, module, lines)

    def test_the_readme_playbook_converges(self):
        self.assertPlaybookConverges(readme_block("yaml").replace(README_ACC, self.acc_dir))
        self.assertEqual(self.acc(self.u, "name"), "train-gpu\n")
        self.assertEqual(json.loads(self.acc(self.u, "spec")),
                         {"num": 1, "device_type": "GPU", "acc_capability": {"memory_gb": 32}})
        self.assertEqual(self.acc(self.u, "attach"), "vm %s\n" % VM1)
        self.assertEqual(self.acc(self.u, "status"), "attached\n")

    def test_the_uri_module_speaks_the_rest_api_on_its_unix_socket(self):
        url = "http://localhost/accelerators/" + self.u
        rc, results = self.playbook(self.play(
            self.task("list", "uri", url="http://localhost/accelerators", unix_socket=self.fs.api_socket),
            self.task("attach", "uri", url=url, method="PUT", unix_socket=self.fs.api_socket, body_format="json",
                      body={"instance_uuid": VM1}, status_code=[200]),
            self.task("attach elsewhere", "uri", url=url, method="PUT", unix_socket=self.fs.api_socket,
                      body_format="json", body={"host": HOST}, status_code=[409]),
            self.task("detach", "uri", url=url, method="DELETE", unix_socket=self.fs.api_socket, status_code=[204])))
        self.assertEqual(rc, 0, results)
        listed = results["list"]["json"]["accelerator"]
        self.assertEqual(sorted(r["uuid"] for r in listed), self.uuids())
        self.assertEqual(results["attach"]["json"]["attach"], "vm " + VM1)
        self.assertIn("attached to vm", results["attach elsewhere"]["json"]["error"]["message"])
        self.assertEqual(self.acc(self.u, "status"), "available\n")
        self.assertIn('file="attach" old="" new="vm %s' % VM1, self.fs.log_text())

    def test_copy_template_and_lineinfile_on_spec_attach_and_name(self):
        d = self.acc_dir
        self.assertPlaybookConverges(self.play(
            self.task("spec", "copy", dest=d + "/spec", content='{"num": 2}'),
            self.task("attach", "copy", dest=d + "/attach", content="vm %s\n" % VM1),
            self.task("name", "copy", dest=d + "/name", content="by-copy")))
        self.assertEqual(self.snapshot(self.u)["spec"], '{"num": 2}')
        self.assertEqual(self.acc(self.u, "name"), "by-copy")
        templates = {"spec.j2": '{\n  "num": {{ 1 + 2 }},\n  "device_type": "GPU"\n}\n', "attach.j2": "",
                     "name.j2": "{{ 'by-template' }}\n"}
        for name, text in templates.items():
            with open(os.path.join(self.workdir, name), "w") as f:
                f.write(text)
        self.assertPlaybookConverges(self.play(*[
            self.task(f, "template", src=os.path.join(self.workdir, f + ".j2"), dest=d + "/" + f)
            for f in ["spec", "attach", "name"]]))
        self.assertEqual(self.acc(self.u, "spec"), '{\n  "num": 3,\n  "device_type": "GPU"\n}\n')
        self.assertEqual(self.acc(self.u, "status"), "available\n")
        self.assertPlaybookConverges(self.play(
            self.task("spec", "lineinfile", path=d + "/spec", regexp='"num":', line='  "num": 4,'),
            self.task("attach", "lineinfile", path=d + "/attach", regexp=".*", line="vm " + VM2),
            self.task("name", "lineinfile", path=d + "/name", regexp=".*", line="by-lineinfile")))
        self.assertEqual(json.loads(self.acc(self.u, "spec")), {"num": 4, "device_type": "GPU"})
        self.assertEqual(self.acc(self.u, "attach"), "vm %s\n" % VM2)
        self.assertEqual(self.acc(self.u, "name"), "by-lineinfile\n")

    def test_bad_content_fails_the_task_with_the_errno_and_changes_nothing(self):
        d = self.acc_dir
        self.ok("echo vm %s > accelerators/%s/attach" % (VM1, self.u))
        before = self.snapshot(self.u)
        cases = [
            (self.task("spec", "copy", dest=d + "/spec", content='{"num": 0}'), "Invalid argument",
             '"num" must be a positive integer'),
            (self.task("attach", "lineinfile", path=d + "/attach", regexp=".*", line="vm " + VM2),
             "Device or resource busy", "attached to vm " + VM1),
            (self.task("name", "copy", dest=d + "/name", content="a/b"), "Invalid argument", "must not contain '/'"),
        ]
        for task, errno_text, reason in cases:
            rc, results = self.playbook(self.play(task))
            self.assertNotEqual(rc, 0)
            result = list(results.values())[0]
            self.assertTrue(result.get("failed"), result)
            self.assertIn(errno_text, result["msg"])
            self.assertIn(reason, self.acc(self.u, "error"))
            self.assertEqual(self.snapshot(self.u), before)


class PuppetTest(ConfigToolTest):
    def test_the_readme_manifest_applies_then_changes_nothing(self):
        manifest = readme_block("puppet").replace(README_ACC, self.acc_dir)
        rc, out = self.puppet(manifest)
        self.assertEqual(rc, 2, out)  # changes applied, no failure
        self.assertEqual(self.acc(self.u, "spec"), '{"num": 1, "device_type": "GPU"}\n')
        self.assertEqual(self.acc(self.u, "attach"), "vm %s\n" % VM1)
        rc, out = self.puppet(manifest)
        self.assertEqual(rc, 0, out)  # nothing to change

    def test_bad_content_fails_with_the_errno_and_changes_nothing(self):
        before = self.snapshot(self.u)
        rc, out = self.puppet("file { '%s/spec': content => \"{\\\"num\\\": [}\\n\" }\n" % self.acc_dir)
        self.assertEqual(rc & 4, 4, out)  # a failure
        self.assertIn("Invalid argument @ rb_file_s_rename", out)
        self.assertIn("spec (renamed from spec", self.acc(self.u, "error"))
        self.assertEqual(self.snapshot(self.u), before)


if __name__ == "__main__":
    unittest.main()
