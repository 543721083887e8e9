"""Accelerator requests (ARQs): find, claim and bind an accelerator on any host of the fleet.

A real PostgreSQL (harness.PrivatePostgres) and several real daemons, each its own host,
as in fleet_test. Requests are made over any host's REST API; what the center holds is
read with psql, what each host did through its own files.
"""
import errno
import json
import multiprocessing
import os
import signal
import subprocess
import time
import unittest
import uuid as uuidlib

from config_tools_test import readme_block, run_playbook
from fleet_test import CuttingProxy, FleetTest
from harness import HOST, Mount, UnixHTTPConnection, echo_into, http_request, wait_for
from pci_test import PciTree


VM = "8e45a2ea-5364-4b0d-a252-bf8becaa606e"
OTHER_VM = "0b0b0b0b-1111-4222-8333-444444444444"
BIND_TIMEOUT = 4
ARQS = "/fleet/accelerator_requests"


def post(sock, body):
    """POST a request over `sock`; (status, body)."""
    conn = UnixHTTPConnection(sock)
    try:
        reply = http_request(conn, "POST", ARQS, body)
        return reply.status, reply.json()
    finally:
        conn.close()


def read_file(path):
    with open(path) as f:
        return f.read()


def requester(sock, instance, results):
    """One requester process: asks for a GPU for `instance`."""
    try:
        results.put((instance,) + post(sock, {"device_type": "GPU", "instance_uuid": instance}))
    except Exception as e:  # reported, not lost
        results.put((instance, 0, {"error": repr(e)}))


class ArqTest(FleetTest):
    """Helpers; self.fs is host "testhost" with 3 fake devices (a GPU, an FPGA, a CRYPTO card);
    so is every other host unless said."""

    lease = 30
    fake_devices = 3

    def fleet_args(self):
        return super().fleet_args() + ["--fleet-bind-timeout", str(BIND_TIMEOUT)]

    def gpu_of(self, m):
        for name in os.listdir(m.path("by-name")):
            if name.startswith("gpu-"):
                return os.path.basename(os.readlink(m.path("by-name", name)))
        raise AssertionError("no GPU on " + m.path())

    def attach_of(self, m, uuid):
        with open(m.path("accelerators", uuid, "attach")) as f:
            return f.read()

    def request(self, uuid, sock=None):
        reply = self.api("GET", ARQS + "/" + uuid, sock=sock)
        return reply.json() if reply.status == 200 else reply.status

    def ended(self, uuid, states=("Bound", "BindFailed")):
        wait_for(lambda: self.request(uuid) == 404 or self.request(uuid)["state"] in states, timeout=20,
                 what="request %s in %s" % (uuid, states))
        return self.request(uuid)

    def fleet_of(self, hosts):
        """Waits until every host's accelerators are in PostgreSQL."""
        want = sum(len(os.listdir(m.path("accelerators"))) for m in hosts)
        wait_for(lambda: len(self.rows("SELECT uuid FROM fleet_inventory") or []) == want, timeout=20,
                 what="the fleet in PostgreSQL")

    def claims(self):
        return self.rows("SELECT accelerator::text, request::text FROM fleet_claims ORDER BY 1") or []

    def restart_host(self, m):
        again = Mount(m.workdir, *self.fleet_args(), db=m.db, host=m.args_host, fake_devices=3)
        again.args_host = m.args_host
        self.addCleanup(again.stop)
        return again


class RequestTest(ArqTest):

    def test_a_request_is_bound_by_the_host_that_has_a_free_gpu_and_deleting_it_detaches(self):
        b, c = self.another_host("hostb", 2), self.another_host("hostc", 2)
        for m in (b, c):  # their GPUs are taken locally: only testhost has a free one
            echo_into(m.path("accelerators", self.gpu_of(m), "attach"), "vm %s\n" % OTHER_VM)
        self.fleet_of([self.fs, b, c])
        wait_for(lambda: self.rows("SELECT count(*) FROM fleet_inventory WHERE device_type = 'GPU' AND "
                                   "status = 'available'") == [["1"]], what="B's and C's GPUs attached")
        status, made = post(c.api_socket, {"device_type": "GPU", "instance_uuid": VM})  # asked on C
        self.assertEqual(status, 201, made)
        self.assertIn(made["state"], ("BindStarted", "Bound"))
        self.assertEqual(made["host"], HOST)
        gpu = self.gpu_of(self.fs)
        self.assertEqual(made["accelerators"], [gpu])
        bound = self.ended(made["uuid"])
        self.assertEqual(bound["state"], "Bound", bound)
        self.assertEqual(bound["attach_handle"]["type"], "TEST_PCI")
        self.assertEqual(bound["error"], "")
        self.assertEqual(self.attach_of(self.fs, gpu), "vm %s\n" % VM)
        self.assertIn("accelerator_request=" + made["uuid"], self.fs.log_text())  # the audit names it
        made_on_c = [line for line in c.audit() if 'action="create"' in line]
        self.assertEqual(len(made_on_c), 1, c.audit())
        self.assertRegex(made_on_c[0], r'uid=0 pid=%d command="[^"]+" accelerator_request="%s" action="create" '
                         r'new="%s"$' % (os.getpid(), made["uuid"], made["state"]))
        # Held: a local detach, by file or over HTTP, is refused and changes nothing.
        with self.assertRaises(OSError) as refused:
            echo_into(self.fs.path("accelerators", gpu, "attach"), "\n")
        self.assertEqual(refused.exception.errno, errno.EBUSY)
        self.assertIn("held by accelerator request %s; delete the request" % made["uuid"],
                      self.read("accelerators", gpu, "error"))
        reply = self.api("DELETE", "/accelerators/" + gpu)
        self.assertEqual(reply.status, 409)
        self.assertIn("held by accelerator request", reply.json()["error"]["message"])
        self.assertEqual(self.attach_of(self.fs, gpu), "vm %s\n" % VM)
        # The same from every host, and listed by instance.
        self.assertEqual(self.request(made["uuid"], sock=b.api_socket), bound)
        listed = self.api("GET", ARQS + "?instance=" + VM, sock=b.api_socket).json()["arqs"]
        self.assertEqual([r["uuid"] for r in listed], [made["uuid"]])
        self.assertEqual(self.api("GET", ARQS + "?instance=" + OTHER_VM).json(), {"arqs": []})
        # Deleting it detaches the GPU on its host and releases it.
        self.assertEqual(self.api("DELETE", ARQS + "/" + made["uuid"], sock=b.api_socket).status, 204)
        self.assertEqual([line.split(" pid=", 1)[1].split(" ", 2)[2] for line in b.audit() if "action=" in line],
                         ['accelerator_request="%s" action="delete" new="Deleting"' % made["uuid"]])
        wait_for(lambda: self.request(made["uuid"]) == 404, what="the request gone")
        wait_for(lambda: self.attach_of(self.fs, gpu) == "", what="the GPU detached")
        self.assertEqual(self.claims(), [])
        self.assertEqual(self.api("DELETE", ARQS + "/" + made["uuid"]).status, 404)
        self.assertIn('accelerator_request="%s" action="delete" error="no accelerator request has the uuid %s"'
                      % (made["uuid"], made["uuid"]), self.fs.audit()[-1])

    def test_two_on_one_host_when_no_host_has_two_fails_and_holds_nothing(self):
        b = self.another_host("hostb", 3)
        self.fleet_of([self.fs, b])
        status, made = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM, "count": 2})
        self.assertEqual(status, 201, made)
        self.assertEqual(made["state"], "BindFailed")
        self.assertIn("no accelerator available", made["error"])
        self.assertEqual(made["accelerators"], [])
        self.assertEqual(self.claims(), [])
        for m in (self.fs, b):
            self.assertEqual(self.attach_of(m, self.gpu_of(m)), "")
        # Deleted at once: it holds nothing.
        self.assertEqual(self.api("DELETE", ARQS + "/" + made["uuid"]).status, 204)
        self.assertEqual(self.request(made["uuid"]), 404)

    def test_a_match_and_a_host_narrow_the_claim(self):
        b = self.another_host("hostb", 3)
        self.fleet_of([self.fs, b])
        status, made = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM, "host": "hostb",
                                                 "match": {"vendor_id": "10de"}})
        self.assertEqual((status, made["host"]), (201, "hostb"), made)
        self.assertEqual(self.ended(made["uuid"])["state"], "Bound")
        self.assertEqual(self.attach_of(b, self.gpu_of(b)), "vm %s\n" % VM)
        status, none = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM,
                                                 "match": {"vendor_id": "1002"}})
        self.assertEqual((status, none["state"]), (201, "BindFailed"), none)
        self.assertIn('matching {"vendor_id": "1002"}', none["error"])

    def test_an_accelerator_in_maintenance_is_never_claimed(self):
        self.fleet_of([self.fs])
        gpu = self.gpu_of(self.fs)
        echo_into(self.fs.path("accelerators", gpu, "maintenance"), "1\n")
        wait_for(lambda: self.rows("SELECT record->>'maintenance' FROM fleet_inventory WHERE uuid = '%s'" % gpu)
                 == [["1"]], what="the maintenance published")
        status, made = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM})
        self.assertEqual((status, made["state"]), (201, "BindFailed"), made)
        self.assertIn("no accelerator available", made["error"])
        self.assertEqual(self.attach_of(self.fs, gpu), "")
        echo_into(self.fs.path("accelerators", gpu, "maintenance"), "0\n")
        wait_for(lambda: self.rows("SELECT record->>'maintenance' FROM fleet_inventory WHERE uuid = '%s'" % gpu)
                 == [["0"]], what="back in service, published")
        status, made = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM})
        self.assertEqual(self.ended(made["uuid"])["state"], "Bound")
        self.assertEqual(self.attach_of(self.fs, gpu), "vm %s\n" % VM)

    def test_twenty_requesters_for_three_gpus_never_share_one(self):
        b, c = self.another_host("hostb", 3), self.another_host("hostc", 3)
        hosts = [self.fs, b, c]
        self.fleet_of(hosts)
        results = multiprocessing.get_context("fork").Queue()
        instances = [str(uuidlib.uuid4()) for _ in range(20)]
        procs = [multiprocessing.get_context("fork").Process(
            target=requester, args=(hosts[k % 3].api_socket, instances[k], results)) for k in range(20)]
        for p in procs:
            p.start()
        replies = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        self.assertEqual(sorted(r[1] for r in replies), [201] * 20, replies)
        final = [self.ended(r[2]["uuid"]) for r in replies]
        bound = [r for r in final if r["state"] == "Bound"]
        failed = [r for r in final if r["state"] == "BindFailed"]
        self.assertEqual((len(bound), len(failed)), (3, 17), [(r["state"], r["error"]) for r in final])
        for r in failed:
            self.assertIn("no accelerator available", r["error"])
        # Every GPU bound to exactly one request, on its host's files and in PostgreSQL.
        held = {r["accelerators"][0]: r["instance_uuid"] for r in bound}
        self.assertEqual(sorted(held), sorted(self.gpu_of(m) for m in hosts))
        for m in hosts:
            self.assertEqual(self.attach_of(m, self.gpu_of(m)), "vm %s\n" % held[self.gpu_of(m)])
        self.assertEqual(sorted(a for a, _ in self.claims()), sorted(held))

    def test_a_claim_its_host_never_binds_fails_after_the_timeout_and_is_free_again(self):
        b = self.another_host("hostb", 3)
        self.fleet_of([self.fs, b])
        gpu = self.gpu_of(b)
        b.crash()  # still "up" for its lease: it can be claimed, not bound
        status, made = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM, "host": "hostb"})
        self.assertEqual((status, made["state"]), (201, "BindStarted"), made)
        failed = self.ended(made["uuid"], states=("BindFailed",))
        self.assertIn("not bound within %d s by host hostb" % BIND_TIMEOUT, failed["error"])
        self.assertEqual(self.claims(), [])
        # Back, the GPU is free for the next request.
        b = self.restart_host(b)
        status, again = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM, "host": "hostb"})
        self.assertEqual(status, 201)
        self.assertEqual(self.ended(again["uuid"])["state"], "Bound", again)
        self.assertEqual(self.attach_of(b, gpu), "vm %s\n" % VM)

    def test_postgresql_killed_during_binds_and_unbinds_leaves_every_request_final(self):
        b, c = self.another_host("hostb", 3), self.another_host("hostc", 3)
        hosts = {HOST: self.fs, "hostb": b, "hostc": c}
        self.fleet_of(list(hosts.values()))
        made = {}
        for name in hosts:
            status, r = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM, "host": name})
            self.assertEqual(status, 201, r)
            made[name] = r["uuid"]
        self.pg.kill()  # while the binders bind
        self.pg.start()
        for name, uuid in made.items():
            final = self.ended(uuid)
            self.assertEqual((final["state"], final["host"]), ("Bound", name), final)
            self.assertEqual(self.attach_of(hosts[name], self.gpu_of(hosts[name])), "vm %s\n" % VM)
        self.assertEqual(len(self.claims()), 3)
        for uuid in made.values():
            self.assertEqual(self.api("DELETE", ARQS + "/" + uuid).status, 204)
        self.pg.kill()  # while they unbind
        self.pg.start()
        for name, uuid in made.items():
            wait_for(lambda: self.request(uuid) == 404, timeout=30, what="request %s gone" % uuid)
            self.assertEqual(self.attach_of(hosts[name], self.gpu_of(hosts[name])), "")
        self.assertEqual(self.claims(), [])

    def test_bad_requests_are_refused_with_a_reason(self):
        cases = [
            ([], "must be a JSON object"),
            ({"instance_uuid": VM}, "\"device_type\""),
            ({"device_type": "GPU"}, "\"instance_uuid\""),
            ({"device_type": "GPU", "instance_uuid": "vm-1"}, "\"instance_uuid\""),
            ({"device_type": "GPU", "instance_uuid": VM, "count": 0}, "\"count\""),
            ({"device_type": "GPU", "instance_uuid": VM, "match": {"a": [1]}}, "\"match\""),
            ({"device_type": "GPU", "instance_uuid": VM, "colour": "red"}, "unknown member \"colour\""),
        ]
        for body, words in cases:
            status, reply = post(self.fs.api_socket, body)
            self.assertEqual(status, 400, body)
            self.assertIn(words, reply["error"]["message"], body)
        # (the schema, made by the publisher, may come after the refusals, which need no PostgreSQL)
        wait_for(lambda: len(self.inventory()) == 3, what="the accelerators in PostgreSQL")
        self.assertEqual(self.rows("SELECT count(*) FROM fleet_requests"), [["0"]])
        fixed = str(uuidlib.uuid4())
        self.assertEqual(post(self.fs.api_socket, {"uuid": fixed, "device_type": "GPU", "instance_uuid": VM})[0], 201)
        status, reply = post(self.fs.api_socket, {"uuid": fixed, "device_type": "GPU", "instance_uuid": VM})
        self.assertEqual(status, 409)
        self.assertIn("is taken", reply["error"]["message"])
        self.assertEqual(self.request("00000000-0000-4000-8000-000000000000"), 404)
        self.assertEqual(self.api("GET", ARQS + "?instance=nope").status, 400)
        self.assertEqual(self.api("PUT", ARQS + "/" + fixed, {}).status, 405)

    def test_postgresql_away_is_503_and_changes_nothing(self):
        wait_for(lambda: len(self.inventory()) == 3, what="the accelerators in PostgreSQL")
        self.pg.stop()
        status, reply = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM})
        self.assertEqual(status, 503, reply)
        self.assertIn("PostgreSQL", reply["error"]["message"])
        self.assertEqual(self.attach_of(self.fs, self.gpu_of(self.fs)), "")
        self.pg.start()
        status, made = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM})
        self.assertEqual(status, 201, made)


class PartitionTest(ArqTest):
    """Host "island" reaches PostgreSQL through a proxy that can cut it off."""

    def fleet_args(self):  # no bind timeout during the partition
        return FleetTest.fleet_args(self) + ["--fleet-bind-timeout", "120"]

    def test_a_local_attach_while_the_center_binds_is_one_visible_conflict(self):
        proxy = CuttingProxy(self.pg.port)
        self.addCleanup(proxy.close)
        workdir = os.path.join(self.workdir, "island")
        os.mkdir(workdir)
        conninfo = "host=127.0.0.1 port=%d user=postgres dbname=postgres" % proxy.port
        island = Mount(workdir, "--fleet", conninfo, "--fleet-lease", "30", host="island", fake_devices=3)
        self.addCleanup(island.stop)
        self.fleet_of([self.fs, island])
        gpu = self.gpu_of(island)
        proxy.partition()  # its lease runs on: the center still claims its GPU
        status, made = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM, "host": "island"})
        self.assertEqual((status, made["state"]), (201, "BindStarted"), made)
        echo_into(island.path("accelerators", gpu, "attach"), "vm %s\n" % OTHER_VM)  # meanwhile, locally
        time.sleep(1.5)  # a binder round or more without the center
        self.assertEqual(self.request(made["uuid"])["state"], "BindStarted")
        proxy.heal()
        failed = self.ended(made["uuid"])
        self.assertEqual(failed["state"], "BindFailed", failed)
        self.assertTrue(failed["error"].startswith("conflict: "), failed["error"])
        self.assertIn(OTHER_VM, failed["error"])
        self.assertEqual(self.attach_of(island, gpu), "vm %s\n" % OTHER_VM)  # never overwritten
        self.assertEqual(self.claims(), [])
        wait_for(lambda: self.rows("SELECT attach FROM fleet_inventory WHERE uuid = '%s'" % gpu) ==
                 [["vm " + OTHER_VM]], what="the local attach published after the partition")


class DriverFailureTest(PciTree, ArqTest):
    """testhost with the pci driver on a test sysfs tree (tests/sysfs), its kernel faked."""

    fake_kernel = True

    def test_a_driver_failure_during_the_bind_fails_the_request_with_its_words_and_frees_the_device(self):
        self.fleet_of([self.fs])
        with open(os.path.join(self.tree, ".fail"), "w") as f:
            f.write("probe 0000:17:00.0\n")
        status, made = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM,
                                                 "match": {"product_id": "2330"}})  # the one at 0000:17:00.0
        self.assertEqual((status, made["state"]), (201, "BindStarted"), made)
        gpu = made["accelerators"][0]
        failed = self.ended(made["uuid"])
        self.assertEqual(failed["state"], "BindFailed", failed)
        self.assertIn("drivers_probe failed: drivers_probe bound nothing", failed["error"])
        self.assertEqual(self.claims(), [])
        self.assertEqual(self.attach_of(self.fs, gpu), "")
        self.assertEqual(self.read("accelerators", gpu, "status"), "available\n")
        wait_for(lambda: os.path.basename(os.readlink(os.path.join(
            self.tree, "bus/pci/devices/0000:17:00.0/driver"))) == "nvidia", what="the GPU back on nvidia")
        # Free: once the driver works, the next request gets it.
        os.unlink(os.path.join(self.tree, ".fail"))
        status, again = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM,
                                                  "match": {"product_id": "2330"}})
        self.assertEqual(self.ended(again["uuid"])["state"], "Bound")
        self.assertEqual(self.attach_of(self.fs, gpu), "vm %s\n" % VM)

    def bound_gpu(self):
        """A request Bound to the GPU at 0000:17:00.0; (request uuid, GPU uuid)."""
        self.fleet_of([self.fs])
        status, made = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM,
                                                 "match": {"product_id": "2330"}})
        self.assertEqual(self.ended(made["uuid"])["state"], "Bound")
        return made["uuid"], made["accelerators"][0]

    def native_driver(self):
        return os.path.basename(os.readlink(os.path.join(self.tree, "bus/pci/devices/0000:17:00.0/driver")))

    def test_an_unbind_that_fails_is_unbindfailed_with_the_drivers_words_and_is_retried(self):
        arq, gpu = self.bound_gpu()
        with open(os.path.join(self.tree, ".fail"), "w") as f:
            f.write("unbind vfio-pci 0000:17:00.0\n")
        self.assertEqual(self.api("DELETE", ARQS + "/" + arq).status, 204)
        failed = self.ended(arq, ("UnbindFailed",))
        self.assertIn("unbind from vfio-pci", failed["error"])
        wait_for(lambda: read_file(self.fs.path("fleet", "requests", arq, "state")) == "UnbindFailed\n",
                 what="UnbindFailed in the files too")
        self.assertEqual(self.attach_of(self.fs, gpu), "vm %s\n" % VM)  # still held, still attached
        self.assertEqual([c[1] for c in self.claims()], [arq])
        # Deleting it again while it fails changes nothing but the state; once the driver
        # works, the binder's next round detaches, and the request is gone.
        self.assertEqual(self.api("DELETE", ARQS + "/" + arq).status, 204)
        os.unlink(os.path.join(self.tree, ".fail"))
        wait_for(lambda: self.request(arq) == 404, timeout=20, what="the request gone")
        self.assertEqual(self.attach_of(self.fs, gpu), "")
        self.assertEqual(self.claims(), [])
        wait_for(lambda: self.native_driver() == "nvidia", what="the GPU back on nvidia")

    def test_a_request_deleted_while_its_host_binds_it_is_unbound_never_bound(self):
        self.fleet_of([self.fs])
        self.kernel.send_signal(signal.SIGSTOP)  # the bind's first step (unbind from nvidia) waits
        status, made = post(self.fs.api_socket, {"device_type": "GPU", "instance_uuid": VM,
                                                 "match": {"product_id": "2330"}})
        self.assertEqual((status, made["state"]), (201, "BindStarted"), made)
        arq, gpu = made["uuid"], made["accelerators"][0]
        unbind = os.path.join(self.tree, "bus/pci/drivers/nvidia/unbind")
        wait_for(lambda: read_file(unbind).strip() == "0000:17:00.0", what="the bind under way")
        self.assertEqual(self.api("DELETE", ARQS + "/" + arq).status, 204)
        self.assertEqual(self.request(arq)["state"], "Deleting")
        self.kernel.send_signal(signal.SIGCONT)  # the attach completes; its compare-and-swap to Bound fails
        wait_for(lambda: self.request(arq) == 404, timeout=20, what="the request gone")
        self.assertEqual(self.attach_of(self.fs, gpu), "")
        self.assertEqual(self.claims(), [])
        wait_for(lambda: self.native_driver() == "nvidia", what="the GPU back on nvidia")
        self.assertNotIn("%s: Bound" % arq, self.fs.log_text())
        self.assertIn("accelerator request %s: unbound and deleted" % arq, self.fs.log_text())


# A shell script that makes a request through the files, waits for it to end, and
# prints what its files say ($M: the mount, $U: the request's uuid, $BODY: its body).
MAKE_AND_WAIT = r"""
set -eu
cd "$M/fleet/requests"
echo "$BODY" > create
test -d "$U"                    # there as soon as the write returned
for i in $(seq 200); do
  state=$(cat "$U/state")
  case $state in Bound|BindFailed) break;; esac
  sleep 0.05
done
echo "state=$state"
echo "host=$(cat "$U/host")"
echo "accelerators=$(cat "$U/accelerators")"
echo "error=$(cat "$U/error")"
echo "files=$(ls "$U" | tr '\n' ' ')"
"""


class FileRequestTest(ArqTest):
    """MOUNT/fleet/requests/: requests made by writing create, read from their files, deleted by rmdir."""

    def requests_dir(self, m=None, *parts):
        return (m or self.fs).path("fleet", "requests", *parts)

    def make(self, m, body, uuid):
        done = subprocess.run(["bash", "-c", MAKE_AND_WAIT], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, M=m.path(), U=uuid, BODY=json.dumps(body)))
        self.assertEqual(done.returncode, 0, done.stderr)
        return dict(line.split("=", 1) for line in done.stdout.splitlines())

    def request_file(self, uuid, name, m=None):
        return read_file(self.requests_dir(m, uuid, name))

    def test_a_shell_script_makes_a_request_waits_for_bound_and_removes_it(self):
        b = self.another_host("hostb", 3)
        self.fleet_of([self.fs, b])
        uuid = str(uuidlib.uuid4())
        out = self.make(self.fs, {"uuid": uuid, "device_type": "GPU", "instance_uuid": VM, "host": "hostb"}, uuid)
        gpu = self.gpu_of(b)
        self.assertEqual(out, {"state": "Bound", "host": "hostb", "accelerators": gpu, "error": "",
                               "files": "accelerators attach_handle error host request state "})
        self.assertEqual(self.attach_of(b, gpu), "vm %s\n" % VM)
        handle = json.loads(self.request_file(uuid, "attach_handle"))
        self.assertEqual(handle["type"], "TEST_PCI")
        self.assertEqual(json.loads(self.request_file(uuid, "request")), self.request(uuid))
        self.assertEqual(self.request_file(uuid, "accelerators"), gpu + "\n")
        # Every host shows it; the folders' modes say who may do what.
        wait_for(lambda: os.path.isdir(self.requests_dir(b, uuid)), what="the request in hostb's view")
        self.assertEqual(self.request_file(uuid, "state", b), "Bound\n")
        self.assertEqual(os.stat(self.requests_dir()).st_mode & 0o7777, 0o775)
        self.assertEqual(os.stat(self.requests_dir(None, "create")).st_mode & 0o7777, 0o220)
        self.assertEqual(os.stat(self.requests_dir(None, uuid, "state")).st_mode & 0o7777, 0o444)
        with open(self.requests_dir(None, "create")) as f:
            self.assertEqual(f.read(), "")  # reads as empty
        self.assertEqual(sorted(os.listdir(self.requests_dir())), sorted(["create", uuid]))
        # Writing the same body again is a no-op: the same request, no second one.
        echo_into(self.requests_dir(None, "create"), json.dumps(
            {"uuid": uuid, "device_type": "GPU", "instance_uuid": VM, "host": "hostb"}) + "\n")
        self.assertEqual(self.rows("SELECT count(*) FROM fleet_requests"), [["1"]])
        self.assertEqual(len([line for line in self.fs.audit() if 'action="create"' in line]), 1, "the no-op unaudited")
        # rmdir deletes it: the host detaches, and the folder goes.
        os.rmdir(self.requests_dir(None, uuid))
        self.assertIn('uid=0 pid=%d command="python3" accelerator_request="%s" action="delete" new="Deleting"'
                      % (os.getpid(), uuid), self.fs.audit()[-1])
        wait_for(lambda: not os.path.exists(self.requests_dir(None, uuid)), what="the request's folder gone")
        self.assertEqual(self.request(uuid), 404)
        wait_for(lambda: self.attach_of(b, gpu) == "", what="the GPU detached")
        self.assertEqual(os.listdir(self.requests_dir()), ["create"])

    def test_the_readme_playbook_makes_one_request_and_waits_for_it(self):
        self.fleet_of([self.fs])
        play = readme_block("yaml", "## The fleet").replace("/accelerators/fleet/requests",
                                                            self.requests_dir())
        arq = "5f0c9a1e-6a53-4c1e-9d38-2f4a7a2b1c0d"
        rc, first = run_playbook(self.workdir, play)
        self.assertEqual(rc, 0, first)
        self.assertTrue(first["Ask for it"]["changed"], first)
        self.assertEqual(self.request_file(arq, "state"), "Bound\n")
        self.assertEqual(self.attach_of(self.fs, self.gpu_of(self.fs)), "vm %s\n" % VM)
        rc, second = run_playbook(self.workdir, play)
        self.assertEqual(rc, 0, second)
        self.assertEqual([name for name, r in second.items() if r["changed"]], [])
        self.assertEqual(self.rows("SELECT uuid::text, state FROM fleet_requests"), [[arq, "Bound"]])

    def test_a_request_that_fails_says_why_in_its_files(self):
        self.fleet_of([self.fs])
        uuid = str(uuidlib.uuid4())
        out = self.make(self.fs, {"uuid": uuid, "device_type": "GPU", "instance_uuid": VM, "count": 2}, uuid)
        self.assertEqual(out["state"], "BindFailed")
        self.assertIn("no accelerator available: no host that is up has 2 free GPU", out["error"])
        self.assertEqual((out["host"], out["accelerators"]), ("", ""))
        self.assertEqual(self.request_file(uuid, "attach_handle"), "")
        self.assertEqual(self.attach_of(self.fs, self.gpu_of(self.fs)), "")
        os.rmdir(self.requests_dir(None, uuid))  # it holds nothing: gone at once
        self.assertFalse(os.path.exists(self.requests_dir(None, uuid)))
        self.assertEqual(self.rows("SELECT count(*) FROM fleet_requests"), [["0"]])

    def test_a_request_a_scheduler_inserts_in_sql_shows_in_the_files(self):
        self.fleet_of([self.fs])
        uuid = str(uuidlib.uuid4())
        self.pg.psql("BEGIN; INSERT INTO fleet_requests (uuid, instance_uuid, device_type) "
                     "VALUES ('%s', '%s', 'GPU'); SELECT fleet_claim('%s'); COMMIT" % (uuid, VM, uuid))
        wait_for(lambda: os.path.exists(self.requests_dir(None, uuid, "state")) and
                 self.request_file(uuid, "state") == "Bound\n", what="the SQL request Bound in the files")
        self.assertEqual(self.request_file(uuid, "host"), HOST + "\n")
        # Even an update that sets no revision is seen (the trigger moves it).
        self.pg.psql("UPDATE fleet_requests SET error = 'noted by the scheduler' WHERE uuid = '%s'" % uuid)
        wait_for(lambda: self.request_file(uuid, "error") == "noted by the scheduler\n",
                 what="the scheduler's update in the files")
        # One inserted without fleet_claim() stays Initial until a binder's round claims it.
        left = str(uuidlib.uuid4())
        self.pg.psql("INSERT INTO fleet_requests (uuid, instance_uuid, device_type) VALUES ('%s', '%s', 'FPGA')"
                     % (left, VM))
        wait_for(lambda: os.path.exists(self.requests_dir(None, left, "state")) and
                 self.request_file(left, "state") == "Bound\n", what="the request left Initial claimed and bound")
        self.assertEqual(self.request_file(left, "host"), HOST + "\n")

    def test_bad_requests_and_changes_of_the_tree_get_an_errno(self):
        self.fleet_of([self.fs])
        create = self.requests_dir(None, "create")
        taken = str(uuidlib.uuid4())
        echo_into(create, json.dumps({"uuid": taken, "device_type": "GPU", "instance_uuid": VM}))
        cases = [
            ("[]", errno.EINVAL),
            ("{\"device_type\": \"GPU\"}", errno.EINVAL),
            ("{\"device_type\": \"GPU\", \"instance_uuid\": \"%s\", \"colour\": 1}" % VM, errno.EINVAL),
            ("{\"device_type\": \"GPU\", \"device_type\": \"FPGA\", \"instance_uuid\": \"%s\"}" % VM,
             errno.EINVAL),
            ("not json", errno.EINVAL),
            (json.dumps({"uuid": taken, "device_type": "FPGA", "instance_uuid": VM}), errno.EEXIST),
        ]
        for body, code in cases:
            with self.assertRaises(OSError, msg=body) as refused:
                echo_into(create, body + "\n")
            self.assertEqual(refused.exception.errno, code, body)
        self.assertEqual(self.rows("SELECT count(*) FROM fleet_requests"), [["1"]])
        self.assertIn("unknown member \"colour\"", self.fs.log_text())
        self.assertIn('accelerator_request="%s" action="create" error="accelerator request: the uuid %s is taken"'
                      % (taken, taken), "\n".join(self.fs.audit()))
        changes = [
            (lambda: os.rmdir(self.requests_dir(None, "00000000-0000-4000-8000-000000000000")), errno.ENOENT),
            (lambda: os.rmdir(create), errno.ENOTDIR),
            (lambda: os.mkdir(self.requests_dir(None, str(uuidlib.uuid4()))), errno.EACCES),
            (lambda: os.unlink(create), errno.EACCES),
            (lambda: echo_into(self.requests_dir(None, taken, "state"), "Bound\n"), errno.EACCES),
            (lambda: os.unlink(self.requests_dir(None, taken, "state")), errno.EACCES),
        ]
        for change, code in changes:
            with self.assertRaises(OSError) as refused:
                change()
            self.assertEqual(refused.exception.errno, code)
        self.assertTrue(os.path.isdir(self.requests_dir(None, taken)))

    def test_postgresql_away_is_eagain_and_the_files_show_the_last_view(self):
        self.fleet_of([self.fs])
        uuid = str(uuidlib.uuid4())
        self.assertEqual(self.make(self.fs, {"uuid": uuid, "device_type": "GPU", "instance_uuid": VM}, uuid)["state"],
                         "Bound")
        self.pg.stop()
        with self.assertRaises(OSError) as refused:
            echo_into(self.requests_dir(None, "create"), json.dumps({"device_type": "GPU", "instance_uuid": VM}))
        self.assertEqual(refused.exception.errno, errno.EAGAIN)
        with self.assertRaises(OSError) as refused:
            os.rmdir(self.requests_dir(None, uuid))
        self.assertEqual(refused.exception.errno, errno.EAGAIN)
        self.assertEqual(self.request_file(uuid, "state"), "Bound\n")  # as last read
        self.pg.start()
        os.rmdir(self.requests_dir(None, uuid))
        wait_for(lambda: not os.path.exists(self.requests_dir(None, uuid)), what="the request gone")


if __name__ == "__main__":
    unittest.main()
