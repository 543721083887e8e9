"""Concurrency stress: many processes, mixed operations, the same and different accelerators.

For CYBORGFS_STRESS_SECONDS (default 10) worker processes write specs, attach
and detach shared accelerators, rename, make and remove their own, and create
through the create file. Afterwards the audit trail (one line per change, in
each accelerator's commit order) and the database must tell one story:
- no lost update: every line's old value is the previous line's new one, the
  last new value is what the file and the database hold, and every spec a
  worker was told was written is in the trail exactly once;
- attach exclusivity: an attached accelerator is only ever detached, never
  handed from one VM to another, and EBUSY came only while attached;
- the listing and by-name agree with the database.
"""
import errno
import json
import multiprocessing
import os
import random
import re
import sqlite3
import time
import unittest
import uuid as uuidlib

from harness import MountTest, echo_into

SECONDS = float(os.environ.get("CYBORGFS_STRESS_SECONDS", "10"))
WORKERS = 8
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def work(index, mnt, shared, seconds, results):
    """One worker process: random operations until the time is up; reports what it was told."""
    rng = random.Random(index)
    vm = str(uuidlib.UUID(int=index + 1, version=4))
    acc = os.path.join(mnt, "accelerators")
    told = {"specs": [], "attached": [], "busy": 0, "errors": [], "operations": 0}
    own = []
    held = set()  # the shared accelerators attached to its VM
    deadline = time.monotonic() + seconds
    serial = 0
    while time.monotonic() < deadline:
        serial += 1
        choice = rng.random()
        target = rng.choice(shared)
        try:
            if choice < 0.3:
                spec = json.dumps({"num": rng.randint(1, 8), "writer": "%d-%d" % (index, serial)}) + "\n"
                echo_into(os.path.join(acc, target, "spec"), spec)
                told["specs"].append([target, spec])
            elif choice < 0.55:
                try:
                    echo_into(os.path.join(acc, target, "attach"), "vm %s\n" % vm)
                    told["attached"].append(target)
                    held.add(target)
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        raise
                    told["busy"] += 1
            elif choice < 0.75 and held:
                # only its owner detaches an accelerator, so the owner knows what it holds
                # (a read could overlap another's refused write and show its bytes)
                target = rng.choice(sorted(held))
                echo_into(os.path.join(acc, target, "attach"), "\n")
                held.discard(target)
            elif choice < 0.85 and own:
                echo_into(os.path.join(acc, rng.choice(own), "name"), "w%d-%d\n" % (index, serial))
            elif choice < 0.92 or not own:
                u = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
                os.mkdir(os.path.join(acc, u))
                own.append(u)
            elif choice < 0.96:
                os.rmdir(os.path.join(acc, own.pop(rng.randrange(len(own)))))
            else:
                echo_into(os.path.join(mnt, "create"), json.dumps({"name": "c%d-%d" % (index, serial)}))
            told["operations"] += 1
        except OSError as e:
            told["errors"].append("%s: %s" % (choice, e))
    for target in held:  # give back what it holds, so the end state is checkable
        echo_into(os.path.join(acc, target, "attach"), "\n")
    results.put((index, told))


class StressTest(MountTest):
    def test_mixed_operations_from_many_processes_tell_one_story(self):
        audit_path = os.path.join(self.workdir, "audit.log")
        self.restart("--audit-log", audit_path)
        shared = self.uuids()  # 4 fake devices ...
        for n in range(4):  # ... and 4 made by hand
            shared.append(self.make(str(uuidlib.UUID(int=1000 + n, version=4))))
        results = multiprocessing.get_context("fork").Queue()
        workers = [multiprocessing.get_context("fork").Process(
            target=work, args=(i, self.fs.mnt, shared, SECONDS, results)) for i in range(WORKERS)]
        for w in workers:
            w.start()
        told = dict(results.get(timeout=SECONDS + 120) for _ in workers)
        for w in workers:
            w.join(timeout=60)
            self.assertEqual(w.exitcode, 0)
        for index, t in told.items():
            self.assertEqual(t["errors"], [], "worker %d" % index)
        self.assertGreater(sum(t["operations"] for t in told.values()), 50 * WORKERS)

        chains = self.audit_chains(audit_path)
        self.assert_no_lost_update(chains, told)
        self.assert_attach_exclusive(chains, told)
        self.assert_listing_matches_the_database(chains, fakes=set(shared[:4]))

    def audit_chains(self, path):
        """(accelerator, file) -> [(old, new)], in the order the audit trail has them."""
        chains = {}
        with open(path) as f:
            for line in f:
                fields = {k: json.loads(v) if v.startswith('"') else v for k, v in FIELD.findall(line)}
                if "new" in fields:
                    key = (fields["accelerator"], fields["file"])
                    chains.setdefault(key, []).append((fields["old"].rstrip("\n"), fields["new"].rstrip("\n")))
        return chains

    def assert_no_lost_update(self, chains, told):
        for (acc, file), chain in chains.items():
            for (_, new), (old, _) in zip(chain, chain[1:]):
                self.assertEqual(old, new, "%s %s: a change was lost between two others" % (acc, file))
            if file in ("spec", "name", "attach") and os.path.isdir(self.fs.path("accelerators", acc)):
                self.assertEqual(self.acc(acc, file).rstrip("\n"), chain[-1][1], "%s %s" % (acc, file))
        for t in told.values():
            for acc, spec in t["specs"]:
                written = [new for _, new in chains[(acc, "spec")] if new == spec.rstrip("\n")]
                self.assertEqual(len(written), 1, "%s: the acknowledged spec %s" % (acc, spec))

    def assert_attach_exclusive(self, chains, told):
        for (acc, file), chain in chains.items():
            if file != "attach":
                continue
            for old, new in chain:
                self.assertTrue(old == "" or new == "", "%s went from %r to %r" % (acc, old, new))
            self.assertEqual(chain[-1][1], "", "%s is still attached" % acc)
        attaches = sum(1 for (acc, file), chain in chains.items() if file == "attach" for _, new in chain if new)
        self.assertGreater(attaches, 0)
        self.assertGreater(sum(t["busy"] for t in told.values()), 0)  # they did contend

    def assert_listing_matches_the_database(self, chains, fakes):
        with sqlite3.connect("file:%s?mode=ro" % self.fs.db, uri=True) as db:
            rows = dict(db.execute("SELECT uuid, name FROM accelerators").fetchall())
            self.assertEqual(db.execute("SELECT count(*) FROM accelerators WHERE attachment != ''").fetchone(), (0,))
        self.assertEqual(sorted(rows), self.uuids())
        by_name = {n: os.readlink(self.fs.path("by-name", n)) for n in os.listdir(self.fs.path("by-name"))}
        self.assertEqual(by_name, {name: "../accelerators/" + u for u, name in rows.items()})
        made = {acc for (acc, file) in chains if file in ("mkdir", "create")}
        removed = {acc for (acc, file) in chains if file == "rmdir"}
        self.assertEqual(made - removed, set(rows) - fakes)  # the trail accounts for every record


if __name__ == "__main__":
    unittest.main()
