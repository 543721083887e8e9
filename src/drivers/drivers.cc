// --drivers: building the named drivers.
#include "cyborgfs/drivers.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "pci_driver.h"

namespace cyborgfs {
namespace {

std::vector<std::string> SplitCommas(const std::string& list) {
  std::vector<std::string> names;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    names.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return names;
}

}  // namespace

Result<std::unique_ptr<Driver>> MakePciDriver(const DriverOptions& options) {
  DeviceTable table;
  if (!options.device_table.empty()) {
    const std::string option = "--device-table " + options.device_table;
    std::error_code ec;
    if (std::filesystem::is_directory(options.device_table, ec)) return Status::Invalid(option + ": is a folder");
    std::ifstream in(options.device_table);
    if (!in) return Status::Invalid(option + ": cannot be read: " + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    if (Status s = table.Add(text.str()); !s.ok()) return s.Prefixed(option);
  }
  return std::unique_ptr<Driver>(std::make_unique<PciDriver>(options.host, Sysfs(options.sysfs_root), std::move(table),
                                                             std::make_unique<PciNames>(options.pci_ids)));
}

Result<std::vector<std::unique_ptr<Driver>>> MakeDrivers(const std::string& list, const DriverOptions& options) {
  std::vector<std::unique_ptr<Driver>> drivers;
  const std::vector<std::string> names = SplitCommas(list);
  for (const std::string& name : names) {
    if (name == "none" && names.size() == 1) continue;
    if (name == "none") return Status::Invalid("--drivers " + list + ": \"none\" cannot be combined with drivers");
    for (const auto& d : drivers) {
      if (d->Name() == name) return Status::Invalid("--drivers " + list + ": driver \"" + name + "\" named twice");
    }
    if (name == "fake") {
      drivers.push_back(MakeFakeDriver(options.host, options.fake_devices));
    } else if (name == "pci") {
      auto pci = MakePciDriver(options);
      if (!pci.ok()) return pci.status();
      drivers.push_back(std::move(*pci));
    } else {
      return Status::Invalid("--drivers " + list + ": unknown driver \"" + name +
                             "\" (known: pci, fake; or none alone)");
    }
  }
  return drivers;
}

}  // namespace cyborgfs
