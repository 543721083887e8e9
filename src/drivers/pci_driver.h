// The pci driver: the host's real PCI accelerators, from sysfs.
//
// Discovery walks bus/pci/devices/* under the sysfs root and keeps the
// devices the DeviceTable calls accelerators, SR-IOV virtual functions
// included (each with its parent in `physfn`). It reads sysfs only: it never
// runs lspci. Each device's uuid is derived from the host name and its PCI
// address, so it is the same after a restart and after a database rebuild.
//
// Thread safety: as Driver requires; Discover may run beside attaches.
#pragma once

#include <memory>
#include <string>

#include "cyborgfs/driver.h"
#include "device_table.h"
#include "pci_names.h"
#include "sysfs.h"

namespace cyborgfs {

class PciDriver final : public Driver {
 public:
  PciDriver(std::string host, Sysfs sysfs, DeviceTable table, std::unique_ptr<PciNames> names);

  std::string Name() const override { return "pci"; }
  Result<std::vector<DiscoveredDevice>> Discover() override;
  Result<std::string> Attach(const std::string& address, const AttachTarget& target) override;
  Status Detach(const std::string& address) override;

 private:
  std::optional<DiscoveredDevice> Describe(const std::string& address);

  const std::string host_;
  const Sysfs sysfs_;
  const DeviceTable table_;
  std::unique_ptr<PciNames> names_;
};

}  // namespace cyborgfs
