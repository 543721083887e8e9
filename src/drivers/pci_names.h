// Vendor and device names from the system's PCI id database (pci.ids, as
// `lspci` shows them), through libpci.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

struct pci_access;

namespace cyborgfs {

class PciNames {
 public:
  // `ids_file`: a pci.ids file; empty for libpci's default
  // (/usr/share/misc/pci.ids on Debian). udev's hwdb is not consulted, so
  // names depend on that file only.
  explicit PciNames(const std::string& ids_file);
  ~PciNames();
  PciNames(const PciNames&) = delete;
  PciNames& operator=(const PciNames&) = delete;

  // "NVIDIA Corporation GH100 [H100 SXM5 80GB]"; for ids the database does
  // not know, "PCI device 10de:2330" (or the vendor's name and the device id).
  std::string Model(uint16_t vendor, uint16_t device);

 private:
  std::string Lookup(int flags, uint16_t vendor, uint16_t device);

  const std::string ids_file_;
  std::mutex mu_;
  pci_access* access_;  // REQUIRES: mu_
};

}  // namespace cyborgfs
