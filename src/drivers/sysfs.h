// Reading and writing a sysfs tree under a root folder.
//
// The pci driver sees the host only through this class, so tests point it at
// trees they build (tests/sysfs/fake_sysfs.py) and the daemon at --sysfs-root.
// Paths are relative to the root ("bus/pci/devices/0000:3b:00.0/vendor").
//
// Thread safety: stateless; all methods may be called concurrently.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cyborgfs/status.h"

namespace cyborgfs {

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
