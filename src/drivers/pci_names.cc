#include "pci_names.h"

#include "cyborgfs/values.h"

extern "C" {
#include <pci/pci.h>
}

#include <cstdio>

namespace cyborgfs {
namespace {

// libpci's default handlers print and exit; a missing or broken database
// must only cost the names.
void IgnoreMessage(char*, ...) {}

}  // namespace

PciNames::PciNames(const std::string& ids_file) : ids_file_(ids_file), access_(pci_alloc()) {
  access_->warning = IgnoreMessage;
  access_->debug = IgnoreMessage;
  pci_set_param(access_, const_cast<char*>("hwdb.disable"), const_cast<char*>("1"));
  if (!ids_file_.empty()) pci_set_name_list_path(access_, const_cast<char*>(ids_file_.c_str()), 0);
}

PciNames::~PciNames() { pci_cleanup(access_); }

std::string PciNames::Lookup(int flags, uint16_t vendor, uint16_t device) {
  char name[256];
  const char* found = pci_lookup_name(access_, name, sizeof name, flags | PCI_LOOKUP_NO_NUMBERS, vendor, device);
  return found ? found : "";
}

std::string PciNames::Model(uint16_t vendor, uint16_t device) {
  std::lock_guard lock(mu_);
  const std::string vendor_name = Lookup(PCI_LOOKUP_VENDOR, vendor, device);
  const std::string device_name = Lookup(PCI_LOOKUP_DEVICE, vendor, device);
  if (vendor_name.empty()) return "PCI device " + Hex4(vendor) + ":" + Hex4(device);
  return vendor_name + " " + (device_name.empty() ? "device " + Hex4(device) : device_name);
}

}  // namespace cyborgfs
