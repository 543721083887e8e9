"""The REST API (docs/api.md) of a real daemon, driven with curl and http.client.

Every route of the spec's table with its codes and headers, the spec's own
example bodies, who may do what on the unix socket and over TCP, hostile
HTTP, and the two doors (HTTP and the mount) on one state.
"""
import errno
import json
import os
import re
import resource
import socket
import stat
import subprocess
import threading
import time
import unittest

from bad_input_test import PROPOSAL_PUT_BODY  # the spec's example as it prints it: not JSON
from harness import BIN, HOST, LISTED, Mount, MountTest, metric, parse_metrics, wait_for

VM = "8e45a2ea-5364-4b0d-a252-bf8becaa606e"
VM2 = "eaaf1c04-ced2-40e4-89a2-87edded06d64"
# The spec's examples (cyborg-api-proposal.rst), with the commas it forgets put in.
SPEC_EXAMPLE = {"remote": 0, "num": 1, "device_type": "CRYPTO",
                "acc_capability": {"num": 2, "ipsec": {"aes": {"3des": 50, "num": 1}}}}
POST_EXAMPLE = {"name": "IPSec Card", "uuid": VM}


def file_value(record_key, text):
    """What a file's text is as a record's value (records.h)."""
    if record_key in ("attach_handle", "mdev_types"):
        return json.loads(text) if text else None
    if record_key in ("numa_node", "sriov_totalvfs", "sriov_numvfs", "remotable", "maintenance"):
        return int(text) if text.strip() else None
    if record_key == "virtfns":
        return text.split()
    return text[:-1] if text.endswith("\n") else text


class ApiTestBase(MountTest):
    def gpu(self):
        return self.fake_uuid("GPU")

    def record(self, uuid):
        r = self.api("GET", "/accelerators/" + uuid)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def assert_record_is_the_files(self, record):
        u = record["uuid"]
        self.assertEqual(set(record), (LISTED - {"spec"}) | {"uuid", "acc_specs", "generation", "created_at",
                                                            "updated_at", "health_reasons", "aer_correctable",
                                                            "aer_nonfatal", "aer_fatal"})
        for name in LISTED - {"spec", "health"}:
            self.assertEqual(record[name], file_value(name, self.acc(u, name)), name)
        self.assertEqual([record["health"]] + record["health_reasons"], self.acc(u, "health").splitlines())
        self.assertEqual(record["acc_specs"], json.loads(self.acc(u, "spec")))



class MetricsTest(ApiTestBase):
    """GET /metrics: the Prometheus text format, as prometheus-cpp writes it."""

    def scrape(self):
        r = self.api("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertIn("text/plain; version=0.0.4", r.headers["content-type"])
        return parse_metrics(r.body.decode())

    def test_every_accelerator_its_state_health_and_the_daemons_work(self):
        u = self.gpu()
        samples = self.scrape()
        for v in self.uuids():
            self.assertEqual(metric(samples, "cyborgfs_accelerator_info", UUID=v, Hostname=HOST), 1)
            self.assertEqual(metric(samples, "cyborgfs_accelerator_state", UUID=v, state="available"), 1)
            self.assertEqual(metric(samples, "cyborgfs_accelerator_state", UUID=v, state="attached"), 0)
            self.assertEqual(metric(samples, "cyborgfs_accelerator_health", UUID=v, health="ok"), 1)
        info = [ls for (n, ls) in samples if n == "cyborgfs_accelerator_info" and ("UUID", u) in ls][0]
        self.assertIn(("device_type", "GPU"), info)
        self.assertIn(("pci_bus_id", self.acc(u, "name").strip().split("-", 1)[1]), info)
        self.assertIn(("numa_node", self.acc(u, "numa_node").strip()), info)
        self.assertGreater(metric(samples, "cyborgfs_requests_total", op="lookup"), 0)
        commits = metric(samples, "cyborgfs_store_commits_total")
        self.assertEqual([n for (n, ls) in samples if n.startswith("cyborgfs_fleet")], [])  # no --fleet
        # They follow: an attach, maintenance.
        self.ok("echo vm 11111111-2222-4333-8444-555555555555 > accelerators/%s/attach" % u)
        self.ok("echo 1 > accelerators/%s/maintenance" % u)
        samples = self.scrape()
        self.assertEqual(metric(samples, "cyborgfs_accelerator_state", UUID=u, state="attached"), 1)
        self.assertEqual(metric(samples, "cyborgfs_accelerator_state", UUID=u, state="available"), 0)
        self.assertEqual(metric(samples, "cyborgfs_accelerator_maintenance", UUID=u), 1)
        self.assertGreater(metric(samples, "cyborgfs_store_commits_total"), commits)


README_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
README_VM = "8e45a2ea-5364-4b0d-a252-bf8becaa606e"


def readme_listing():
    """The `cyborgfs list` block of the README (after its command line)."""
    with open(README_PATH) as f:
        text = f.read()
    block = text[text.index("    $ cyborgfs list\n") + len("    $ cyborgfs list\n"):]
    lines = []
    for line in block.splitlines():
        if not line.startswith("    ") or line.startswith("    $"):
            break
        lines.append(line[4:])
    return "\n".join(lines) + "\n"


class ListCommandTest(MountTest):
    """cyborgfs list and show: the same binary, asking a running daemon over its API socket."""

    def cli(self, *args, columns=None):
        if columns:  # on a terminal of that width (script(1) gives it a pty)
            command = "stty cols %d; %s %s" % (columns, BIN, " ".join(args))
            r = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=30)
            return r.returncode, r.stdout.replace("\r\n", "\n"), r.stderr
        r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout, r.stderr

    def test_the_readme_listing_is_what_list_prints_for_the_fake_devices(self):
        workdir = os.path.join(self.workdir, "compute-1")
        os.mkdir(workdir)
        m = Mount(workdir, host="compute-1", fake_devices=4)
        self.addCleanup(m.stop)
        gpu = os.path.basename(os.readlink(m.path("by-name", "gpu-0000:f0:00.0")))
        with open(m.path("accelerators", gpu, "attach"), "w") as f:
            f.write("vm %s\n" % README_VM)
        rc, out, err = self.cli("list", "--api-socket", m.api_socket)
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, readme_listing())

    def test_list_fits_the_terminal_and_json_is_the_records(self):
        rc, wide, _ = self.cli("list", "--api-socket", self.fs.api_socket)
        self.assertEqual(rc, 0)
        self.assertEqual(len(wide.splitlines()), 5)
        self.assertTrue(all(len(line) > 80 for line in wide.splitlines()[1:]))  # not cut without a terminal
        for u in self.uuids():
            self.assertIn(u, wide)
        rc, narrow, _ = self.cli("list", "--api-socket", self.fs.api_socket, columns=80)
        self.assertEqual(rc, 0)
        self.assertEqual(len(narrow.splitlines()), 5, narrow)
        self.assertTrue(all(len(line) <= 80 for line in narrow.splitlines()), narrow)
        self.assertIn("gpu-0000:f0:00.0", narrow)  # names stay whole where they can
        rc, out, _ = self.cli("list", "--json", "--api-socket", self.fs.api_socket)
        self.assertEqual(json.loads(out), self.api("GET", "/accelerators").json()["accelerator"])

    def test_show_prints_one_accelerators_files_by_name_or_uuid(self):
        u = self.fake_uuid("GPU")
        name = self.acc(u, "name").strip()
        rc, by_uuid, _ = self.cli("show", "--api-socket", self.fs.api_socket, u)
        rc2, by_name, _ = self.cli("show", "--api-socket", self.fs.api_socket, name)
        self.assertEqual((rc, rc2), (0, 0))
        self.assertEqual(by_uuid, by_name)
        fields = dict(line.split(":", 1) for line in by_uuid.splitlines())
        self.assertEqual(fields["uuid"].strip(), u)
        self.assertEqual(fields["status"].strip(), "available")
        self.assertEqual(fields["health"].strip(), "ok")

    def test_no_daemon_and_unknown_accelerators_exit_non_zero_saying_why(self):
        rc, out, err = self.cli("list", "--api-socket", os.path.join(self.workdir, "nobody.sock"))
        self.assertEqual((rc, out), (1, ""))
        self.assertIn("no cyborgfs answers on", err)
        self.assertIn("is the daemon running?", err)
        rc, out, err = self.cli("show", "--api-socket", self.fs.api_socket, "no-such-card")
        self.assertEqual(rc, 1)
        self.assertIn("no-such-card", err)
        rc, _, err = self.cli("show", "--api-socket", self.fs.api_socket)
        self.assertEqual(rc, 2)
        self.assertIn("accelerator", err)
        rc, _, _ = self.cli("list", "--bogus")
        self.assertEqual(rc, 2)

class SpecRoutesTest(ApiTestBase):
    """The rows of the spec's table."""

    def test_get_accelerators_lists_every_record_as_the_files_show_it(self):
        status, headers, body = self.curl("http://localhost/accelerators")
        self.assertEqual(status, 200)
        self.assertIn("Content-Type: application/json", headers)
        self.assertTrue(body.endswith("}\n"))
        listed = json.loads(body)
        self.assertEqual(list(listed), ["accelerator"])  # the spec's key
        self.assertEqual(sorted(r["uuid"] for r in listed["accelerator"]), self.uuids())
        for record in listed["accelerator"]:
            self.assert_record_is_the_files(record)
        # the same list as a file, in one read
        self.assertEqual(self.read("accelerators.json"), body)

    def test_get_one_accelerator_with_its_generation_as_etag(self):
        u = self.gpu()
        r = self.api("GET", "/accelerators/" + u)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertEqual(r.headers["etag"], '"%d"' % r.json()["generation"])
        self.assert_record_is_the_files(r.json())
        self.assertEqual(self.api("GET", "/accelerators/" + u.upper()).json()["uuid"], u)  # any case
        # If-None-Match: not modified
        r2 = self.api("GET", "/accelerators/" + u, headers={"If-None-Match": r.headers["etag"]})
        self.assertEqual((r2.status, r2.body), (304, b""))
        # HEAD: the headers only
        head = self.api("HEAD", "/accelerators/" + u)
        self.assertEqual((head.status, head.body, head.headers["content-length"]), (200, b"", str(len(r.body))))
        for missing in (VM, "not-a-uuid"):
            r = self.api("GET", "/accelerators/" + missing)
            self.assertEqual(r.status, 404)
            self.assertEqual(r.error(), "no such accelerator: " + missing)
        # by name, as by-name/ has it
        r = self.api("GET", "/accelerators/by-name/" + self.acc(u, "name").strip())
        self.assertEqual((r.status, r.json()["uuid"]), (200, u))
        self.assertEqual(self.api("GET", "/accelerators/by-name/nobody-has-it").status, 404)

    def test_post_creates_with_the_spec_example_and_location(self):
        status, headers, body = self.curl("-X", "POST", "-H", "Content-Type: application/json",
                                          "-d", json.dumps(POST_EXAMPLE), "http://localhost/accelerators")
        self.assertEqual((status, body), (201, ""))
        self.assertIn("\r\nLocation: /accelerators/%s\r\n" % VM, headers)
        # at once in the mount, as a file create makes it
        self.assertTrue(os.path.isdir(self.fs.path("accelerators", VM)))
        self.assertEqual(os.readlink(self.fs.path("by-name", "IPSec Card")), "../accelerators/" + VM)
        self.assertEqual(self.acc(VM, "status"), "available\n")
        self.assertIn('command="curl" accelerator="%s" file="create" old="" new="IPSec Card"' % VM,
                      self.fs.log_text())
        # the uuid or the name taken: 409
        for body in (POST_EXAMPLE, {"name": "IPSec Card"}, {"name": "other", "uuid": VM}):
            r = self.api("POST", "/accelerators", body)
            self.assertEqual(r.status, 409, body)
            self.assertIn("create: ", r.error())
        # no uuid: one is made
        r = self.api("POST", "/accelerators", {"name": "fresh"})
        self.assertEqual(r.status, 201)
        made = r.headers["location"].rsplit("/", 1)[1]
        self.assertEqual(self.acc(made, "name"), "fresh\n")

    def test_post_to_a_uuid(self):
        r = self.api("POST", "/accelerators/" + VM, {"name": "by path"})
        self.assertEqual((r.status, r.headers["location"]), (201, "/accelerators/" + VM))
        self.assertEqual(self.acc(VM, "name"), "by path\n")
        r = self.api("POST", "/accelerators/" + VM2, {"name": "both", "uuid": VM2})
        self.assertEqual(r.status, 201)
        r = self.api("POST", "/accelerators/" + VM2.replace("e", "f"), {"name": "mismatch", "uuid": VM2})
        self.assertEqual(r.status, 400)
        self.assertIn("is not the path's", r.error())
        r = self.api("POST", "/accelerators/not-a-uuid", {"name": "x"})
        self.assertEqual((r.status, r.error()), (400, 'create: "not-a-uuid" is not a uuid'))

    def test_post_bodies_the_schema_refuses_are_400_and_make_nothing(self):
        before = self.uuids()
        for body in ({}, {"uuid": VM}, {"name": 7}, {"name": "x", "uuid": "nope"}, {"name": "x", "colour": 1},
                     ["name"], {"name": "a/b"}, {"name": ""}):
            r = self.api("POST", "/accelerators", body)
            self.assertEqual(r.status, 400, body)
            self.assertTrue(r.error().startswith("create: "), r.error())
        for raw in ('{"name": "x"', '{"name": "x", "name": "y"}', "", "null", '{"name": "x"} {}'):
            r = self.api("POST", "/accelerators", raw, {"Content-Type": "application/json"})
            self.assertEqual(r.status, 400, raw)
        self.assertEqual(self.uuids(), before)
        self.assertIn('file="create" error="create: ', self.fs.log_text())  # audited as the create file does

    def test_put_acc_specs_with_the_spec_example_and_if_match(self):
        u = self.gpu()
        generation = self.record(u)["generation"]
        for route in ("acc_specs", "acc_spec"):
            r = self.api("PUT", "/accelerators/%s/%s" % (u, route), {"acc_specs": SPEC_EXAMPLE})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["acc_specs"], SPEC_EXAMPLE)
            self.assertEqual(json.loads(self.acc(u, "spec")), SPEC_EXAMPLE)
            self.assertEqual(r.headers["etag"], '"%d"' % r.json()["generation"])
        # setting the value it has changes nothing (a no-op, as a file write is)
        self.assertEqual(self.record(u)["generation"], generation + 1)
        # If-Match: the generation it was read at
        current = self.api("GET", "/accelerators/" + u).headers["etag"]
        r = self.api("PUT", "/accelerators/%s/acc_specs" % u, {"acc_specs": {"num": 2}}, {"If-Match": current})
        self.assertEqual(r.status, 200)
        r = self.api("PUT", "/accelerators/%s/acc_specs" % u, {"acc_specs": {"num": 3}}, {"If-Match": current})
        self.assertEqual(r.status, 409)  # "another process updated the same spec"
        self.assertIn("another request changed the accelerator meanwhile", r.error())
        self.assertEqual(json.loads(self.acc(u, "spec")), {"num": 2})
        self.assertEqual(self.api("PUT", "/accelerators/%s/acc_specs" % u, {"acc_specs": {"num": 4}},
                                  {"If-Match": "*"}).status, 200)
        r = self.api("PUT", "/accelerators/%s/acc_specs" % u, {"acc_specs": {"num": 5}}, {"If-Match": "W/\"1\""})
        self.assertEqual(r.status, 400)

    def test_put_acc_specs_refusals_say_what_the_error_file_says(self):
        u = self.gpu()
        before = self.snapshot(u)
        cases = [({"acc_specs": {"num": 0}}, 400), ({"acc_specs": []}, 400), ({"num": 1}, 400),
                 ({"acc_specs": {}, "x": 1}, 400)]
        for body, code in cases:
            r = self.api("PUT", "/accelerators/%s/acc_specs" % u, body)
            self.assertEqual(r.status, code, body)
            self.assertEqual(r.error() + "\n", self.acc(u, "error"))
            self.assertTrue(r.error().startswith("spec: "))
        r = self.api("PUT", "/accelerators/%s/acc_specs" % u, PROPOSAL_PUT_BODY,
                     {"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        self.assertIn("line 6, column", r.error())  # where the spec's example forgets its comma
        self.assertEqual(self.snapshot(u), before)
        self.assertEqual(self.api("PUT", "/accelerators/%s/acc_specs" % VM, {"acc_specs": {}}).status, 404)

    def test_put_attaches_to_a_vm_or_the_host_and_delete_detaches(self):
        u = self.gpu()
        r = self.api("PUT", "/accelerators/" + u, {"instance_uuid": VM})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json()["status"], r.json()["attach"]), ("attached", "vm " + VM))
        self.assertEqual(self.acc(u, "attach"), "vm %s\n" % VM)
        self.assertEqual(json.loads(self.acc(u, "attach_handle")), r.json()["attach_handle"])
        # the same again: a no-op; something else: 409
        self.assertEqual(self.api("PUT", "/accelerators/" + u, {"instance_uuid": VM.upper()}).status, 200)
        for other in ({"instance_uuid": VM2}, {"host": HOST}):
            r = self.api("PUT", "/accelerators/" + u, other)
            self.assertEqual(r.status, 409, other)
            self.assertEqual(r.error() + "\n", self.acc(u, "error"))
        status, headers, body = self.curl("-X", "DELETE", "http://localhost/accelerators/" + u)
        self.assertEqual((status, body), (204, ""))
        self.assertEqual(self.acc(u, "status"), "available\n")
        self.assertEqual(self.api("DELETE", "/accelerators/" + u).status, 204)  # detached already: a no-op
        r = self.api("PUT", "/accelerators/" + u, {"host": HOST})
        self.assertEqual((r.status, r.json()["attach"]), (200, "host " + HOST))
        self.assertEqual(self.api("DELETE", "/accelerators/" + u).status, 204)
        self.assertEqual(self.api("DELETE", "/accelerators/" + VM).status, 404)
        self.assertEqual(self.api("PUT", "/accelerators/" + VM, {"instance_uuid": VM}).status, 404)

    def test_put_attach_bodies_that_name_no_target_are_400(self):
        u = self.gpu()
        for body in (POST_EXAMPLE, {"instance_uuid": "nope"}, {"host": "no such host!"}, {"host": "elsewhere"},
                     {"instance_uuid": VM, "host": HOST}, {"instance_uuid": 7}, {}, [VM]):
            r = self.api("PUT", "/accelerators/" + u, body)
            self.assertEqual(r.status, 400, body)
            self.assertTrue(r.error().startswith("attach: "), r.error())
        self.assertEqual(self.acc(u, "status"), "available\n")

    def test_an_offline_accelerator_is_409(self):
        self.restart(fake_devices=3)  # the fourth fake device is gone: its record stays, offline
        gone = [u for u in self.uuids() if self.acc(u, "status") == "offline\n"]
        self.assertEqual(len(gone), 1)
        r = self.api("PUT", "/accelerators/" + gone[0], {"instance_uuid": VM})
        self.assertEqual(r.status, 409)
        self.assertIn("offline", r.error())


class OtherRoutesTest(ApiTestBase):
    def test_rename_remove_rescan_and_drivers(self):
        u = self.gpu()
        r = self.api("PUT", "/accelerators/%s/name" % u, {"name": "big-gpu"})
        self.assertEqual((r.status, r.json()["name"]), (200, "big-gpu"))
        self.assertEqual(os.readlink(self.fs.path("by-name", "big-gpu")), "../accelerators/" + u)
        other = self.fake_uuid("FPGA")
        r = self.api("PUT", "/accelerators/%s/name" % other, {"name": "big-gpu"})
        self.assertEqual(r.status, 409)
        self.assertEqual(self.api("PUT", "/accelerators/%s/name" % other, {"name": "a/b"}).status, 400)
        self.assertEqual(self.api("PUT", "/accelerators/%s/name" % other, {"nom": "x"}).status, 400)
        # removing a record: one no driver reports; 409 for one a driver still reports
        self.assertEqual(self.api("POST", "/accelerators", POST_EXAMPLE).status, 201)
        self.assertEqual(self.api("DELETE", "/accelerators/%s/record" % VM).status, 204)
        self.assertFalse(os.path.exists(self.fs.path("accelerators", VM)))
        r = self.api("DELETE", "/accelerators/%s/record" % u)
        self.assertEqual(r.status, 409)
        # rescan and the drivers' health
        r = self.api("POST", "/rescan")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["fake"]["state"], "ok")
        self.assertEqual(self.api("GET", "/drivers").json(), json.loads(self.read("drivers")))

    def test_options_lists_the_methods(self):
        r = self.api("OPTIONS", "/accelerators/" + VM)
        self.assertEqual(r.status, 204)
        self.assertEqual(r.headers["allow"], "GET, HEAD, POST, PUT, DELETE, OPTIONS")


class PermissionTest(ApiTestBase):
    NOBODY = ["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]

    def setUp(self):
        super().setUp()
        os.chmod(self.workdir, 0o755)  # nobody reaches the socket

    def changes(self, u):
        return [("-X", "POST", "-H", "Content-Type: application/json", "-d", '{"name": "x"}',
                 "http://localhost/accelerators"),
                ("-X", "PUT", "-H", "Content-Type: application/json", "-d", '{"acc_specs": {"num": 1}}',
                 "http://localhost/accelerators/%s/acc_specs" % u),
                ("-X", "PUT", "-H", "Content-Type: application/json", "-d", '{"instance_uuid": "%s"}' % VM,
                 "http://localhost/accelerators/" + u),
                ("-X", "DELETE", "http://localhost/accelerators/" + u),
                ("-X", "PUT", "-H", "Content-Type: application/json", "-d", '{"name": "x"}',
                 "http://localhost/accelerators/%s/name" % u),
                ("-X", "DELETE", "http://localhost/accelerators/%s/record" % u),
                ("-X", "POST", "http://localhost/rescan")]

    def test_the_socket_is_0666_an_unprivileged_peer_reads_and_may_not_change(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.fs.api_socket).st_mode), 0o666)
        u = self.gpu()
        before = self.snapshot(u)
        for read in ("http://localhost/accelerators", "http://localhost/accelerators/" + u,
                     "http://localhost/drivers"):
            self.assertEqual(self.curl(read, setpriv=self.NOBODY)[0], 200, read)
        for change in self.changes(u):
            status, _, body = self.curl(*change, setpriv=self.NOBODY)
            self.assertEqual(status, 403, change)
            self.assertIn("only root and the members of the admin group", json.loads(body)["error"]["message"])
        self.assertEqual(self.snapshot(u), before)
        self.assertEqual(len(self.uuids()), 4)

    def test_a_member_of_the_admin_group_may_change(self):
        self.restart("--admin-group", "4242")
        u = self.gpu()
        member = ["--reuid", "nobody", "--regid", "nogroup", "--groups", "4242"]
        status, _, body = self.curl("-X", "PUT", "-H", "Content-Type: application/json", "-d",
                                    '{"instance_uuid": "%s"}' % VM, "http://localhost/accelerators/" + u,
                                    setpriv=member)
        self.assertEqual(status, 200, body)
        uid = int(subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout)
        self.assertIn('uid=%d' % uid, [line for line in self.fs.log_text().splitlines()
                                       if 'file="attach"' in line and VM in line][0])
        self.assertEqual(self.curl("-X", "DELETE", "http://localhost/accelerators/" + u,
                                   setpriv=self.NOBODY)[0], 403)


class TcpTest(ApiTestBase):
    TOKEN = "0123456789abcdef0123456789abcdef"

    def setUp(self):
        super().setUp()
        self.token_file = os.path.join(self.workdir, "token")
        with open(self.token_file, "w") as f:
            f.write(self.TOKEN + "\n")
        os.chmod(self.token_file, 0o600)
        self.restart("--api-listen", "127.0.0.1:0", "--api-token-file", self.token_file)
        line = [l for l in self.fs.log_text().splitlines() if "serving the REST API" in l][-1]
        self.port = int(line.rsplit("(port ", 1)[1].rstrip(")"))
        self.url = "http://127.0.0.1:%d" % self.port

    def test_every_request_needs_the_token(self):
        status, headers, body = self.curl(self.url + "/accelerators", sock="")
        self.assertEqual(status, 401)
        self.assertIn('WWW-Authenticate: Bearer realm="cyborgfs"', headers)
        self.assertIn("Authorization: Bearer", json.loads(body)["error"]["message"])
        status, headers, _ = self.curl("-H", "Authorization: Bearer wrong", self.url + "/accelerators", sock="")
        self.assertEqual(status, 401)
        self.assertIn('error="invalid_token"', headers)
        u = self.gpu()
        put = ["-X", "PUT", "-H", "Content-Type: application/json", "-d", '{"instance_uuid": "%s"}' % VM,
               self.url + "/accelerators/" + u]
        self.assertEqual(self.curl(*put, sock="")[0], 401)
        self.assertEqual(self.acc(u, "status"), "available\n")
        auth = ["-H", "Authorization: Bearer " + self.TOKEN]
        status, _, body = self.curl(*auth, self.url + "/accelerators", sock="")
        self.assertEqual(status, 200)
        self.assertEqual(len(json.loads(body)["accelerator"]), 4)
        self.assertEqual(self.curl(*auth, *put, sock="")[0], 200)
        self.assertEqual(self.acc(u, "status"), "attached\n")
        audit = [line for line in self.fs.log_text().splitlines() if 'file="attach"' in line and VM in line]
        self.assertIn('command="api token" address="127.0.0.1:', audit[0])
        # the unix socket goes on as before, without a token
        self.assertEqual(self.api("GET", "/accelerators/" + u).status, 200)

    def test_a_token_file_others_may_read_or_none_at_all_is_refused(self):
        self.fs.stop()
        os.chmod(self.token_file, 0o644)
        r = subprocess.run([self.fs.proc.args[0], "-f", "--db", self.fs.db, "--api-listen", "127.0.0.1:0",
                            "--api-token-file", self.token_file, self.fs.mnt], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("is readable by everyone: chmod o-r", r.stderr)
        r = subprocess.run([self.fs.proc.args[0], "-f", "--db", self.fs.db, "--api-listen", "127.0.0.1:0",
                            self.fs.mnt], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--api-listen needs --api-token-file", r.stderr)
        self.assertFalse(os.path.ismount(self.fs.mnt))


class HostileTest(ApiTestBase):
    def raw(self, data, timeout=15):
        """Sends `data` on a new connection; returns all the server sends until it closes."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(self.fs.api_socket)
        s.sendall(data)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        s.close()
        return got

    def test_bad_http_gets_a_4xx_with_a_json_body(self):
        u = self.gpu()
        r = self.api("GET", "/nowhere")
        self.assertEqual(r.status, 404)
        self.assertIn("no such resource: /nowhere", r.error())
        r = self.api("PATCH", "/accelerators/" + u)
        self.assertEqual(r.status, 405)
        self.assertEqual(r.headers["allow"], "GET, HEAD, POST, PUT, DELETE, OPTIONS")
        r.error()
        r = self.api("POST", "/accelerators/%s/acc_specs" % u, {"acc_specs": {}})
        self.assertEqual((r.status, r.headers["allow"]), (405, "PUT, OPTIONS"))
        r = self.api("PUT", "/accelerators/%s/acc_specs" % u, b'{"acc_specs": {"pad": "' + b"x" * 70000 + b'"}}',
                     {"Content-Type": "application/json"})
        self.assertEqual(r.status, 413)
        self.assertIn("larger than 65536 bytes", r.error())
        r = self.api("PUT", "/accelerators/%s/acc_specs" % u, '{"acc_specs": {}}', {"Content-Type": "text/plain"})
        self.assertEqual(r.status, 415)
        self.assertIn("application/json", r.error())
        r = self.api("PUT", "/accelerators/%s/acc_specs" % u, b"\x1f\x8b\x08\x00",
                     {"Content-Type": "application/json", "Content-Encoding": "gzip"})
        self.assertEqual(r.status, 415)
        r = self.api("PUT", "/accelerators/%s/acc_specs" % u, '{"acc_specs": {', {"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        self.assertIn("incomplete JSON document", r.error())
        r = self.api("GET", "/accelerators", headers={"X-Big": "y" * 20000})
        self.assertEqual(r.status, 431)
        got = self.raw(b"HELLO THERE\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 400 "), got)
        self.assertIn(b'"code":400', got)
        got = self.raw(b"POST /accelerators HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
        self.assertTrue(got.startswith(b"HTTP/1.1 400 "), got)
        self.assertEqual(self.acc(u, "status"), "available\n")
        self.assertEqual(len(self.uuids()), 4)

    def test_pipelined_requests_are_answered_in_order(self):
        u = self.gpu()
        got = self.raw(("GET /accelerators/%s HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /drivers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % u).encode())
        self.assertEqual(re.findall(rb"HTTP/1.1 (\d{3}) ", got), [b"200", b"404", b"200"])

    def test_a_client_that_expects_100_continue_is_told_to_go_on(self):
        body = json.dumps({"name": "expecting"}).encode()
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.fs.api_socket)
        s.sendall(b"POST /accelerators HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        self.assertEqual(s.recv(4096), b"HTTP/1.1 100 Continue\r\n\r\n")  # before the body is sent
        s.sendall(body)
        self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 201 "))
        s.close()

    def test_a_chunked_body_is_read(self):
        body = json.dumps({"name": "chunky"}).encode()
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        got = self.raw(b"POST /accelerators HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked)
        self.assertTrue(got.startswith(b"HTTP/1.1 201 "), got)
        self.assertTrue(os.path.islink(self.fs.path("by-name", "chunky")))

    def test_slow_and_stalled_clients_are_dropped_and_hold_up_no_one(self):
        stalled = socket.socket(socket.AF_UNIX)
        stalled.connect(self.fs.api_socket)
        stalled.sendall(b"PUT /accelerators/x/acc_specs HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        drip = socket.socket(socket.AF_UNIX)
        drip.connect(self.fs.api_socket)
        dropped = threading.Event()

        def dripping():  # one byte a second, for ever: the whole request must come in 10 s
            try:
                for byte in b"GET /accelerators HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"s" * 100:
                    drip.send(bytes([byte]))
                    time.sleep(0.5)
            except OSError:
                dropped.set()
        t = threading.Thread(target=dripping)
        t.start()
        self.addCleanup(t.join)
        self.addCleanup(drip.close)
        self.addCleanup(stalled.close)
        # meanwhile others are served, through HTTP and the mount
        u = self.gpu()
        for n in range(20):
            self.assertEqual(self.api("PUT", "/accelerators/%s/acc_specs" % u, {"acc_specs": {"num": n + 1}}).status,
                             200)
            self.assertEqual(json.loads(self.acc(u, "spec")), {"num": n + 1})
        stalled.settimeout(30)
        got = stalled.recv(4096)  # the server gives up on it (408), then closes
        self.assertTrue(got == b"" or got.startswith(b"HTTP/1.1 408 "), got)
        wait_for(dropped.is_set, timeout=30, what="the dripping client dropped")
        self.assertIn("dropped a connection whose request did not arrive whole", self.fs.log_text())

    def test_a_thousand_connections_at_once(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        u = self.gpu()
        idle, waiting = [], []
        for n in range(1000):
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.fs.api_socket)
            (idle if n % 2 else waiting).append(s)
        self.addCleanup(lambda: [s.close() for s in idle + waiting])
        for s in waiting:  # half of them ask, none reads its answer yet
            s.sendall(("GET /accelerators/%s HTTP/1.1\r\nHost: x\r\n\r\n" % u).encode())
        # the mount and another client are served meanwhile
        self.assertEqual(self.api("PUT", "/accelerators/" + u, {"instance_uuid": VM}).status, 200)
        self.assertEqual(self.acc(u, "attach"), "vm %s\n" % VM)
        self.assertEqual(self.write_file("accelerators/%s/attach" % u, "\n"), 0)
        self.assertEqual(self.api("GET", "/accelerators/" + u).json()["status"], "available")
        # every one that asked gets its answer, and the idle ones may ask too
        for s in idle:
            s.sendall(b"GET /drivers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for s in waiting + idle:
            s.settimeout(30)
            head = s.recv(64)
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertEqual(self.api("GET", "/accelerators").status, 200)


class TwoDoorsTest(ApiTestBase):
    def test_a_change_over_http_is_seen_at_once_through_the_mount_and_back(self):
        u = self.gpu()
        name = self.acc(u, "name").strip()
        for _ in range(2):  # the kernel holds the values now
            self.acc(u, "spec"), self.acc(u, "status"), self.read("accelerators.json")
            os.stat(self.fs.path("by-name", name))
        self.assertEqual(self.api("PUT", "/accelerators/%s/acc_specs" % u, {"acc_specs": {"num": 7}}).status, 200)
        self.assertEqual(json.loads(self.acc(u, "spec")), {"num": 7})
        self.assertEqual(self.api("PUT", "/accelerators/" + u, {"instance_uuid": VM}).status, 200)
        self.assertEqual(self.acc(u, "status"), "attached\n")
        self.assertIn('"attach":"vm %s"' % VM, self.read("accelerators.json"))
        self.assertEqual(self.api("PUT", "/accelerators/%s/name" % u, {"name": "renamed"}).status, 200)
        self.assertFalse(os.path.lexists(self.fs.path("by-name", name)))
        self.assertTrue(os.path.islink(self.fs.path("by-name", "renamed")))
        # and a file write is seen over HTTP at once
        self.assertEqual(self.write_file("accelerators/%s/spec" % u, '{"num": 8}'), 0)
        self.assertEqual(self.record(u)["acc_specs"], {"num": 8})
        self.assertEqual(self.write_file("accelerators/%s/attach" % u, "\n"), 0)
        self.assertEqual(self.record(u)["status"], "available")
        listed = json.loads(self.read("accelerators.json"))["accelerator"]
        self.assertEqual([r for r in listed if r["uuid"] == u][0]["attach"], "")

    def test_racing_attaches_through_both_doors_one_wins(self):
        u = self.gpu()
        path = self.fs.path("accelerators", u, "attach")
        for round_ in range(20):
            results = {}
            start = threading.Barrier(2)

            def by_file():
                start.wait()
                results["file"] = self.write_file("accelerators/%s/attach" % u, "vm %s\n" % VM)

            def by_http():
                start.wait()
                results["http"] = self.api("PUT", "/accelerators/" + u, {"instance_uuid": VM2}).status
            threads = [threading.Thread(target=by_file), threading.Thread(target=by_http)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            won = [door for door, ok in (("file", results["file"] == 0), ("http", results["http"] == 200)) if ok]
            self.assertEqual(len(won), 1, (round_, results))
            lost = {"file": errno.EBUSY, "http": 409}
            other = "http" if won == ["file"] else "file"
            self.assertEqual(results[other], lost[other], results)
            with open(path) as f:
                self.assertEqual(f.read(), "vm %s\n" % (VM if won == ["file"] else VM2))
            self.assertEqual(self.record(u)["attach"], "vm " + (VM if won == ["file"] else VM2))
            self.assertEqual(self.api("DELETE", "/accelerators/" + u).status, 204)


if __name__ == "__main__":
    unittest.main()
