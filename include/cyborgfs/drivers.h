// The built-in host drivers and how --drivers names them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cyborgfs/driver.h"
#include "cyborgfs/status.h"

namespace cyborgfs {

struct DriverOptions {
  std::string host;                 // this host's name
  int fake_devices = 4;             // how many devices the fake driver reports
  std::string sysfs_root = "/sys";  // where the pci driver reads sysfs
  std::string pci_ids;              // pci.ids for device names; empty: libpci's default
  std::string device_table;         // extra accelerator ids (see device_table.h); empty: none
};

// The drivers named in `list` ("pci", "fake", "none", comma-separated; "none"
// alone means no driver). kInvalid for an unknown or repeated name, or an
// unreadable or malformed device table.
Result<std::vector<std::unique_ptr<Driver>>> MakeDrivers(const std::string& list, const DriverOptions& options);

// A simulated host with `devices` PCI accelerators of mixed types (GPU, FPGA,
// CRYPTO) at addresses 0000:f0:00.0, 0000:f0:00.1, ... with real vendor and
// product ids. Attach and detach keep the device's binding in memory, as a
// kernel would, and answer like a real driver: a VM attach yields
// {"type":"TEST_PCI","address":...}, a host attach only to `host`.
std::unique_ptr<Driver> MakeFakeDriver(std::string host, int devices);

// The pci driver (src/drivers/pci_driver.h) for `options`.
Result<std::unique_ptr<Driver>> MakePciDriver(const DriverOptions& options);

}  // namespace cyborgfs
