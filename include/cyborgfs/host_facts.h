// What the host says of a device, as its driver last reported it: shown in
// the accelerator's read-only files, kept in the record (the Store writes it
// as a JSON column), informational only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace cyborgfs {

// The health words, from the best to the worst (HostFacts::health).
inline constexpr const char* kHealths[] = {"ok", "unknown", "degraded", "failed"};

struct HostFacts {
  std::string kernel_driver;         // the kernel driver bound to it now, e.g. "nvidia"; empty if none
  std::string model;                 // vendor and device name, e.g. "NVIDIA Corporation GH100 [H100 SXM5 80GB]"
  int numa_node = -1;                // -1: unknown or not a NUMA machine
  std::string iommu_group;           // e.g. "12"; empty if none
  std::string physfn;                // an SR-IOV virtual function's parent, by address; empty otherwise
  std::vector<std::string> virtfns;  // an SR-IOV parent's virtual functions, by address
  int sriov_totalvfs = -1;           // an SR-IOV parent's VF counts; -1 otherwise
  int sriov_numvfs = -1;
  std::string subsystem_id;  // "<vendor>:<device>" of the board, e.g. "10de:16c1"; empty if none
  // The vGPU (mediated device) types the device offers, by type id.
  struct MdevType {
    std::string name;  // e.g. "GRID T4-1B"
    int available_instances = 0;
    bool operator==(const MdevType& o) const { return name == o.name && available_instances == o.available_instances; }
  };
  std::map<std::string, MdevType> mdev_types;

  // Its health as the driver judged it at the last look: "ok", "degraded",
  // "failed" or "unknown" (a signal could not be read, or nothing judged
  // it), with one reason per signal that is not clean ("pcie link at 8 GT/s
  // x8, capable of 16 GT/s x16"). The worst signal decides; a read that
  // fails is "unknown", never "failed". kHealths has the words.
  std::string health = "unknown";
  std::vector<std::string> health_reasons;
  // PCIe AER error counts since boot (the device's aer_dev_* TOTAL_ERR_*
  // lines), -1 where the device has none: for the metrics; health counts
  // those since the last rescan.
  int64_t aer_correctable = -1;
  int64_t aer_nonfatal = -1;
  int64_t aer_fatal = -1;

  bool operator==(const HostFacts& o) const {
    return std::tie(kernel_driver, model, numa_node, iommu_group, physfn, virtfns, sriov_totalvfs, sriov_numvfs,
                    subsystem_id, mdev_types, health, health_reasons, aer_correctable, aer_nonfatal,
                    aer_fatal) == std::tie(o.kernel_driver, o.model, o.numa_node, o.iommu_group, o.physfn, o.virtfns,
                                           o.sriov_totalvfs, o.sriov_numvfs, o.subsystem_id, o.mdev_types, o.health,
                                           o.health_reasons, o.aer_correctable, o.aer_nonfatal, o.aer_fatal);
  }
  bool operator!=(const HostFacts& o) const { return !(*this == o); }
};

}  // namespace cyborgfs
