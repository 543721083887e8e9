"""Accelerator requests (ARQs): find, claim and bind an accelerator on any host of the fleet.

A real PostgreSQL (harness.PrivatePostgres) and several real daemons, each its own host,
as in fleet_test. Requests are made over any host's REST API; what the center holds is
read with psql, what each host did through its own files.
"""
import errno
import json
import multiprocessing
import os
import sys
import time
import unittest
import uuid as uuidlib

from fleet_test import CuttingProxy, FleetTest
from harness import HOST, Mount, UnixHTTPConnection, echo_into, http_request, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sysfs"))
import fake_sysfs  # noqa: E402

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
        wait_for(lambda: self.request(made["uuid"]) == 404, what="the request gone")
        wait_for(lambda: self.attach_of(self.fs, gpu) == "", what="the GPU detached")
        self.assertEqual(self.claims(), [])
        self.assertEqual(self.api("DELETE", ARQS + "/" + made["uuid"]).status, 404)

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
        self.assertEqual(self.rows("SELECT count(*) FROM fleet_requests"), [["0"]])
        wait_for(lambda: len(self.inventory()) == 3, what="the accelerators in PostgreSQL")
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


class DriverFailureTest(ArqTest):
    """testhost with the pci driver on a test sysfs tree (tests/sysfs), its kernel faked."""

    fake_devices = 0

    def setUp(self):
        self.tree = None
        super().setUp()

    def start(self, *args, **kwargs):
        if self.tree is None:  # beside the database, removed with the work folder
            self.tree = fake_sysfs.build(os.path.join(self.workdir, "sys"))
            kernel = fake_sysfs.start_kernel(self.tree)
            self.addCleanup(kernel.wait)
            self.addCleanup(kernel.terminate)
        return super().start("--drivers", "pci", "--sysfs-root", self.tree, *args, **kwargs)

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


if __name__ == "__main__":
    unittest.main()
