#include "cyborgfs/driver.h"

namespace cyborgfs {

Result<DiscoveredDevice> Driver::Describe(const std::string& address) {
  auto all = Discover();
  if (!all.ok()) return all.status();
  for (DiscoveredDevice& d : *all) {
    if (d.address == address) return std::move(d);
  }
  return Status::NoDevice("no device at " + address);
}

}  // namespace cyborgfs
