"""Answers writes to the control files of a fake_sysfs tree, as the kernel would.

    python3 fake_kernel.py ROOT

It watches bus/pci/drivers/*/bind and unbind, bus/pci/drivers_probe and every
device's driver_override, and changes the `driver` links as the kernel does:
unbind drops the link, bind sets it, drivers_probe binds an unbound device to
its driver_override, else to the driver it had when the tree was built.
Every write it sees is appended to ROOT/.journal as "<file> <value>", once its effect is done.
ROOT/.ready appears once it watches.
ROOT/.fail lists operations that must bind nothing, one per line:
"bind <driver> <address>", "unbind <driver> <address>", "probe <address>" or
"create <mdev uuid>".
Writing a uuid to mdev_supported_types/<type>/create makes bus/mdev/devices/
<uuid> (with `remove` and an `mdev_type` link) and lowers available_instances;
writing 1 to its `remove` undoes that.
A write is seen within a few milliseconds; the driver under test waits for
the `driver` link, as it does for a kernel that probes asynchronously.
"""
import os
import shutil
import sys
import time


class FakeKernel:
    def __init__(self, root):
        self.root = root
        self.devices = os.path.join(root, "bus/pci/devices")
        self.native = {a: self.driver(a) for a in os.listdir(self.devices)}
        self.seen = {}
        for path in self.controls():
            self.seen[path] = self.stamp(path)

    def driver(self, address):
        link = os.path.join(self.devices, address, "driver")
        return os.path.basename(os.readlink(link)) if os.path.islink(link) else ""

    def controls(self):
        drivers = os.path.join(self.root, "bus/pci/drivers")
        for name in sorted(os.listdir(drivers)):
            for control in ["bind", "unbind"]:
                yield os.path.join(drivers, name, control)
        yield os.path.join(self.root, "bus/pci/drivers_probe")
        for address in sorted(os.listdir(self.devices)):
            yield os.path.join(self.devices, address, "driver_override")
            types = os.path.join(self.devices, address, "mdev_supported_types")
            for t in sorted(os.listdir(types)) if os.path.isdir(types) else []:
                yield os.path.join(types, t, "create")
        mdevs = os.path.join(self.root, "bus/mdev/devices")
        for uuid in sorted(os.listdir(mdevs)) if os.path.isdir(mdevs) else []:
            yield os.path.join(mdevs, uuid, "remove")

    @staticmethod
    def stamp(path):
        try:
            st = os.stat(path)
            return (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return None

    def failing(self, operation):
        try:
            with open(os.path.join(self.root, ".fail")) as f:
                return operation in (line.strip() for line in f)
        except OSError:
            return False

    def bind(self, address, name):
        if not os.path.isdir(os.path.join(self.root, "bus/pci/drivers", name)) or self.driver(address):
            return
        os.symlink("../../../bus/pci/drivers/" + name, os.path.join(self.devices, address, "driver"))

    def handle(self, path, value):
        rel = os.path.relpath(path, self.root)
        try:
            self.apply(path, rel, value)
        finally:  # journaled once done: whoever sees the line sees its effect
            with open(os.path.join(self.root, ".journal"), "a") as journal:
                journal.write("%s %s\n" % (rel, value))

    def apply(self, path, rel, value):
        parts = rel.split("/")
        if parts[-1] == "driver_override":
            return  # the value is read at probe time
        if parts[-1] in ("create", "remove"):
            return self.mdev(path, parts[-1], value)
        address = value
        if not address or not os.path.isdir(os.path.join(self.devices, address)):
            return
        if parts[-1] == "unbind" and self.driver(address) == parts[-2] and \
                not self.failing("unbind %s %s" % (parts[-2], address)):
            os.unlink(os.path.join(self.devices, address, "driver"))
        elif parts[-1] == "bind" and not self.failing("bind %s %s" % (parts[-2], address)):
            self.bind(address, parts[-2])
        elif parts[-1] == "drivers_probe" and not self.failing("probe " + address):
            with open(os.path.join(self.devices, address, "driver_override")) as f:
                override = f.read().strip()
            self.bind(address, override if override not in ("", "(null)") else self.native.get(address, ""))

    # Writes seen in one poll are taken by time; file times are coarse (a few
    # ms), so ties go in the order every sequence writes them.
    ORDER = {"unbind": 0, "remove": 0, "driver_override": 1, "bind": 2, "create": 2, "drivers_probe": 3}

    def mdev(self, path, control, value):
        """create: a mediated device <uuid> of that type appears; remove (1): it goes."""
        if control == "create":
            type_dir = os.path.dirname(path)
            device = os.path.join(self.root, "bus/mdev/devices", value)
            if os.path.exists(device) or self.failing("create " + value):
                return
            # Built aside and moved in, after the count: a reader that sees the
            # device sees all of it, as after a kernel's synchronous write.
            self.count(type_dir, -1)
            building = os.path.join(self.root, ".mdev-building")
            os.makedirs(building)
            open(os.path.join(building, "remove"), "w").close()
            os.symlink(os.path.realpath(type_dir), os.path.join(building, "mdev_type"))
            os.makedirs(os.path.dirname(device), exist_ok=True)
            os.rename(building, device)
            self.seen[os.path.join(device, "remove")] = self.stamp(os.path.join(device, "remove"))
        elif value == "1":
            device = os.path.dirname(path)
            type_dir = os.path.realpath(os.path.join(device, "mdev_type"))
            self.count(type_dir, +1)
            shutil.rmtree(device)

    @staticmethod
    def count(type_dir, change):
        path = os.path.join(type_dir, "available_instances")
        with open(path) as f:
            available = int(f.read()) + change
        with open(path, "w") as f:
            f.write("%d\n" % available)

    def run(self):
        while True:
            changed = []
            for path in list(self.controls()):
                stamp = self.stamp(path)
                # Size 0 is a write caught between its O_TRUNC and its bytes (a
                # write always ends with a newline): take it at the next poll.
                if stamp is None or stamp == self.seen.get(path) or stamp[1] == 0:
                    continue
                self.seen[path] = stamp
                changed.append((stamp[0], self.ORDER[os.path.basename(path)], path))
            for _, _, path in sorted(changed):
                with open(path) as f:
                    value = f.read().strip()
                self.handle(path, value)
            time.sleep(0.002)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: fake_kernel.py ROOT")
    kernel = FakeKernel(sys.argv[1])
    open(os.path.join(sys.argv[1], ".ready"), "w").close()  # watching from now on
    kernel.run()
