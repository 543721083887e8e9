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

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "cyborgfs/driver.h"
#include "device_table.h"
#include "pci_names.h"
#include "sysfs.h"

namespace cyborgfs {

class PciDriver final : public Driver {
 public:
  // `settle_ms`: how long a step waits for the device's `driver` link to
  // show its effect (a kernel binds synchronously, some drivers probe
  // asynchronously).
  PciDriver(std::string host, Sysfs sysfs, DeviceTable table, std::unique_ptr<PciNames> names, int settle_ms = 2000);

  std::string Name() const override { return "pci"; }
  Result<std::vector<DiscoveredDevice>> Discover() override;
  Result<DiscoveredDevice> Describe(const std::string& address) override;
  // No sysfs tree, vfio-pci not loaded, no IOMMU groups.
  std::vector<std::string> Health() override;

  // Detached: neither bound to vfio-pci nor with that driver_override, not
  // left without a driver when its own is known (a crash mid-attach), and
  // no vGPU of it left. A VM: bound to vfio-pci, or for a vgpu_type its
  // mediated device exists. The host: bound to its own driver.
  bool Agrees(const DiscoveredDevice& observed, const AttachTarget* target, const std::string& memory) override;

  // VM: unbind from the current driver, driver_override = vfio-pci,
  // drivers_probe; handle {"type":"PCI","address":...,"iommu_group":N}.
  // VM with a spec asking for "vgpu_type": a mediated device of that type is
  // created on the GPU (its uuid written to mdev_supported_types/<type>/
  // create, kept in `memory` so a restart re-creates it); handle
  // {"type":"MDEV","uuid":...,"mdev_type":...,"address":...}; kInvalid for
  // a type the GPU does not offer.
  // Host (this host only, else kInvalid): bound to its own driver; handle
  // {"type":"HOST","address":...,"driver":...}. Every step is checked by
  // reading the `driver` link back; a failed step undoes the earlier ones
  // and is kIoError naming the step. `memory` keeps "native_driver": the
  // driver the device had before its first attach.
  Result<std::string> Attach(const std::string& address, const AttachTarget& target, std::string& memory) override;

  // Releases a device held for a VM (bound to vfio-pci or with that
  // driver_override) back to its native driver: unbind, clear
  // driver_override, write the address to drivers/<native>/bind
  // (drivers_probe if that fails, or if the native driver is unknown).
  // Any other device is left as it is.
  Status Detach(const std::string& address, std::string& memory) override;

  // Health, from sysfs alone (no vendor library). What the device says of
  // itself (at every Discover and Describe): PCIe AER errors counted since
  // the last rescan (aer_dev_correctable and aer_dev_nonfatal: degraded;
  // aer_dev_fatal: failed), power_state `error` (failed), a link slower or
  // narrower than it can be (current_link_speed/width below max_link_*:
  // degraded), a QAT device whose qat/state is not `up` (failed). And here:
  // not bound as its record wants (failed while attached, degraded while
  // detached; a rescan repairs it), D3cold while attached (degraded). A
  // signal the device does not have is not judged; one it has that cannot
  // be read is `unknown`.
  void JudgeHealth(const std::string& address, const AttachTarget* target, const std::string& memory,
                   HostFacts& facts) const override;

 private:
  class Steps;
  // `rescan`: AER counts read now are the baseline of the next rescan's.
  std::optional<DiscoveredDevice> Read(const std::string& address, bool rescan, std::string* why_not = nullptr);
  // What the device at `address` says of its health (into `facts`).
  void ReadSignals(const std::string& address, bool rescan, HostFacts& facts);
  bool Holds(const DiscoveredDevice& observed, const AttachTarget* target, const std::string& memory) const;
  std::string BoundDriver(const std::string& address) const;
  // Polls `condition` for up to settle_ms: whether it came true.
  bool Eventually(const std::function<bool()>& condition) const;
  // Waits up to settle_ms for the device's driver to be `expected` ("" = none).
  bool Settles(const std::string& address, const std::string& expected) const;
  Status BindNative(Steps& steps, const std::string& address, const std::string& native);
  Result<std::string> AttachVgpu(const std::string& address, const std::string& type, std::string& memory);
  Status RemoveVgpu(std::string& memory);
  // The mediated device `memory` names, if it exists: its type.
  std::optional<std::string> VgpuPresent(const std::string& memory) const;
  // Waits up to settle_ms for `path` to exist (`present`) or to be gone.
  bool Appears(const std::string& path, bool present) const;

  const std::string host_;
  const Sysfs sysfs_;
  const DeviceTable table_;
  std::unique_ptr<PciNames> names_;
  const int settle_ms_;
  std::atomic<bool> said_what_it_sees_{false};
  // AER counts per address (correctable, nonfatal, fatal), for the errors
  // since the last rescan.
  struct AerSeen {
    std::array<int64_t, 3> at_rescan{};    // the totals the last rescan read
    std::array<int64_t, 3> that_rescan{};  // the errors it counted (since the one before)
  };
  std::mutex aer_mu_;
  std::map<std::string, AerSeen> aer_;  // REQUIRES: aer_mu_
};

}  // namespace cyborgfs
