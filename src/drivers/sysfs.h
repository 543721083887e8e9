// Reading and writing a sysfs tree under a root folder.
//
// The pci driver sees the host only through this class, so tests point it at
// trees they build (tests/sysfs/fake_sysfs.py) and the daemon at --sysfs-root.
// Paths are relative to the root ("bus/pci/devices/0000:3b:00.0/vendor").
//
// Thread safety: stateless; all methods may be called concurrently.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cyborgfs/status.h"

namespace cyborgfs {

// A hex value file ("0x10de", "0x030200"): at most 24 bits; nullopt for
// anything else (absent, empty, not hex, too large).
std::optional<uint32_t> ParseSysfsHex(const std::optional<std::string>& text);

// A small decimal count or id (numa_node, available_instances, an iommu
// group); -1 for anything else (numa_node reads "-1" without NUMA).
int ParseSysfsCount(const std::optional<std::string>& text);

class Sysfs {
 public:
  explicit Sysfs(std::string root);

  const std::string& root() const { return root_; }

  // A value file's content without its trailing newline; nullopt if absent
  // or unreadable.
  std::optional<std::string> Read(const std::string& path) const;

  // The last component of a symlink's target ("driver" -> ".../nvidia" gives
  // "nvidia"); nullopt if `path` is not a symlink.
  std::optional<std::string> LinkName(const std::string& path) const;

  // The entry names of a folder, sorted; empty if absent.
  std::vector<std::string> List(const std::string& path) const;

  bool Exists(const std::string& path) const;

  // Writes `value` and a newline to a control file in one write(2), as
  // `echo value > file` does ("" clears driver_override); kIoError naming
  // the file and the kernel's errno text on failure.
  Status Write(const std::string& path, const std::string& value) const;

 private:
  std::string Full(const std::string& path) const;
  const std::string root_;
};

}  // namespace cyborgfs
