"""Builds sysfs trees as the kernel lays them out, for the pci driver's tests.

    python3 fake_sysfs.py ROOT            # the standard host below, in ROOT

A tree has devices/pci0000:00/<address>/ folders with the value files the
kernel shows (class, vendor, device, subsystem ids, numa_node,
driver_override, sriov_*), the links (driver, iommu_group, physfn, virtfnN),
bus/pci/devices/<address> links to them, bus/pci/drivers/<name>/{bind,unbind}
control files, bus/pci/drivers_probe, kernel/iommu_groups/<n>/devices/ and,
for vGPU-capable GPUs, mdev_supported_types/<type>/{name,available_instances,
device_api,create}. Every device has the health signals the kernel shows
(aer_dev_correctable, aer_dev_nonfatal, aer_dev_fatal with their TOTAL_ERR_*
lines, power_state, current_/max_link_speed and _width), QAT devices
qat/state; aer_text() and signal() change them. Control files are plain
empty files: nothing answers a write (the tests that need a kernel's answer
simulate it).
"""
import os
import sys
from dataclasses import dataclass, field


@dataclass
class Device:
    address: str
    vendor: int
    device: int
    pci_class: int
    driver: str = ""
    numa_node: int = 0
    iommu_group: int = -1  # -1: none
    subsystem_vendor: int = 0
    subsystem_device: int = 0
    physfn: str = ""  # a virtual function's parent
    sriov_totalvfs: int = 0
    mdev_types: dict = field(default_factory=dict)  # type id -> (name, available_instances)


def standard_host():
    """A host with one of each card the driver must know, and devices it must ignore."""
    devices = [
        Device("0000:17:00.0", 0x10de, 0x2330, 0x030200, "nvidia", 0, 17, 0x10de, 0x16c1),  # H100 SXM5
        Device("0000:3b:00.0", 0x10de, 0x20b0, 0x030200, "nvidia", 0, 20, 0x10de, 0x134f, sriov_totalvfs=2),  # A100
        Device("0000:3b:00.4", 0x10de, 0x20b0, 0x030200, "nvidia", 0, 21, physfn="0000:3b:00.0"),
        Device("0000:3b:00.5", 0x10de, 0x20b0, 0x030200, "nvidia", 0, 22, physfn="0000:3b:00.0"),
        Device("0000:5e:00.0", 0x8086, 0x37c8, 0x0b4000, "c6xx", 0, 30, sriov_totalvfs=2),  # QAT C62x
        Device("0000:5e:01.0", 0x8086, 0x37c9, 0x0b4000, "c6xxvf", 0, 31, physfn="0000:5e:00.0"),
        Device("0000:5e:01.1", 0x8086, 0x37c9, 0x0b4000, "c6xxvf", 0, 32, physfn="0000:5e:00.0"),
        Device("0000:86:00.0", 0x8086, 0x09c4, 0x120000, "dfl-pci", 1, 40),  # PAC Arria 10 FPGA
        Device("0000:af:00.1", 0x10ee, 0x5005, 0x058000, "xclmgmt", 1, 41),  # Alveo U250 (user PF)
        Device("0000:d8:00.0", 0x10de, 0x1eb8, 0x030200, "nvidia", 1, 50,  # Tesla T4 with vGPU types
               mdev_types={"nvidia-222": ("GRID T4-1B", 16), "nvidia-223": ("GRID T4-2B", 8)}),
        Device("0000:18:00.0", 0x8086, 0x1572, 0x020000, "i40e", 0, 60),  # X710 NIC: ignored
        Device("0000:19:00.0", 0x144d, 0xa808, 0x010802, "nvme", 0, 61),  # NVMe drive: ignored
        Device("0000:00:01.0", 0x8086, 0x2030, 0x060400, "pcieport", 0, 1),  # PCIe bridge: ignored
    ]
    for pf in devices:
        pf.vfs = [d.address for d in devices if d.physfn == pf.address]
    return devices


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def link(path, target):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(target, path)


def add_driver(root, name):
    drv = os.path.join(root, "bus/pci/drivers", name)
    for control in ["bind", "unbind", "new_id", "remove_id"]:
        if not os.path.exists(os.path.join(drv, control)):
            write(os.path.join(drv, control), "")


def add_device(root, d):
    rel = os.path.join("devices/pci0000:00", d.address)
    path = os.path.join(root, rel)
    for name, value in [("class", "0x%06x" % d.pci_class), ("vendor", "0x%04x" % d.vendor),
                        ("device", "0x%04x" % d.device), ("subsystem_vendor", "0x%04x" % d.subsystem_vendor),
                        ("subsystem_device", "0x%04x" % d.subsystem_device), ("numa_node", str(d.numa_node)),
                        ("driver_override", "(null)"), ("enable", "1"), ("remove", ""), ("reset", "")]:
        write(os.path.join(path, name), value + ("\n" if value else ""))
    add_signals(path, d)
    link(os.path.join(root, "bus/pci/devices", d.address), "../../../" + rel)
    if d.driver:
        add_driver(root, d.driver)
        link(os.path.join(path, "driver"), "../../../bus/pci/drivers/" + d.driver)
    if d.iommu_group >= 0:
        group = "kernel/iommu_groups/%d" % d.iommu_group
        link(os.path.join(path, "iommu_group"), "../../../" + group)
        link(os.path.join(root, group, "devices", d.address), "../../../../" + rel)
    if d.physfn:
        link(os.path.join(path, "physfn"), "../" + d.physfn)
    if d.sriov_totalvfs:
        write(os.path.join(path, "sriov_totalvfs"), "%d\n" % d.sriov_totalvfs)
        write(os.path.join(path, "sriov_numvfs"), "%d\n" % len(getattr(d, "vfs", [])))
    for n, vf in enumerate(getattr(d, "vfs", [])):
        link(os.path.join(path, "virtfn%d" % n), "../" + vf)
    for type_id, (name, available) in d.mdev_types.items():
        t = os.path.join(path, "mdev_supported_types", type_id)
        for f, value in [("name", name), ("available_instances", str(available)), ("device_api", "vfio-pci"),
                         ("description", name), ("create", "")]:
            write(os.path.join(t, f), value + ("\n" if value else ""))
        os.makedirs(os.path.join(t, "devices"), exist_ok=True)


AER_LINES = {
    "correctable": (["RxErr", "BadTLP", "BadDLLP", "Rollover", "Timeout", "NonFatalErr", "CorrIntErr", "HeaderOF"],
                    "TOTAL_ERR_COR"),
    "nonfatal": (["Undefined", "DLP", "SDES", "TLP", "FCP", "CmpltTO", "CmpltAbrt", "UnxCmplt", "RxOF",
                  "MalfTLP", "ECRC", "UnsupReq", "ACSViol"], "TOTAL_ERR_NONFATAL"),
    "fatal": (["Undefined", "DLP", "SDES", "TLP", "FCP", "CmpltTO", "CmpltAbrt", "UnxCmplt", "RxOF",
               "MalfTLP", "ECRC", "UnsupReq", "ACSViol"], "TOTAL_ERR_FATAL"),
}


def aer_text(severity, total):
    """An aer_dev_<severity> file as the kernel shows it, `total` errors (counted as the first kind)."""
    names, total_name = AER_LINES[severity]
    return "".join("%s %d\n" % (n, total if k == 0 else 0) for k, n in enumerate(names)) + \
        "%s %d\n" % (total_name, total)


def device_dir(root, address):
    return os.path.join(root, "devices/pci0000:00", address)


def signal(root, address, name, value):
    """Sets health signal file `name` (power_state, current_link_speed, qat/state, ...) of a device."""
    write(os.path.join(device_dir(root, address), name), value + "\n")


def add_signals(path, d):
    for severity in AER_LINES:
        write(os.path.join(path, "aer_dev_" + severity), aer_text(severity, 0))
    for name, value in [("power_state", "D0"), ("current_link_speed", "16.0 GT/s PCIe"),
                        ("max_link_speed", "16.0 GT/s PCIe"), ("current_link_width", "16"),
                        ("max_link_width", "16")]:
        write(os.path.join(path, name), value + "\n")
    if d.pci_class >> 8 == 0x0b40 and not d.physfn:  # a crypto co-processor (QAT), its PF
        write(os.path.join(path, "qat/state"), "up\n")


def build(root, devices=None):
    """Builds a tree with `devices` (default: the standard host) in `root`."""
    for d in devices or standard_host():
        add_device(root, d)
    add_driver(root, "vfio-pci")
    write(os.path.join(root, "bus/pci/drivers_probe"), "")
    write(os.path.join(root, "bus/pci/rescan"), "")
    return root


def start_kernel(root, timeout=10.0):
    """fake_kernel.py answering `root`'s control files, once it is ready; its Popen (the
    caller terminates it)."""
    import subprocess
    import time
    proc = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                          "fake_kernel.py"), root])
    deadline = time.monotonic() + timeout
    while not os.path.exists(os.path.join(root, ".ready")):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.terminate()
            proc.wait()
            raise AssertionError("the fake kernel did not start on " + root)
        time.sleep(0.02)
    return proc


def remove_device(root, address):
    """The device leaves the bus (hot unplug): its bus/pci/devices link goes."""
    os.unlink(os.path.join(root, "bus/pci/devices", address))


def restore_device(root, address):
    link(os.path.join(root, "bus/pci/devices", address), "../../../devices/pci0000:00/" + address)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: fake_sysfs.py ROOT")
    build(sys.argv[1])
