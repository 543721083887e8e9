#include "pci_driver.h"

#include <cctype>
#include <cstdio>

#include "cyborgfs/values.h"

namespace cyborgfs {
namespace {

constexpr const char* kDevices = "bus/pci/devices/";

std::optional<uint32_t> ParseHex(const std::optional<std::string>& text) {
  if (!text || text->empty()) return std::nullopt;
  char* end = nullptr;
  const unsigned long value = std::strtoul(text->c_str(), &end, 16);
  if (*end != '\0' || value > 0xffffffUL) return std::nullopt;
  return static_cast<uint32_t>(value);
}

// numa_node reads "-1" on machines without NUMA; anything odd is unknown too.
int ParseNumaNode(const std::optional<std::string>& text) {
  if (!text || text->empty()) return -1;
  char* end = nullptr;
  const long value = std::strtol(text->c_str(), &end, 10);
  return *end == '\0' && value >= 0 && value < 65536 ? static_cast<int>(value) : -1;
}

}  // namespace

PciDriver::PciDriver(std::string host, Sysfs sysfs, DeviceTable table, std::unique_ptr<PciNames> names)
    : host_(std::move(host)), sysfs_(std::move(sysfs)), table_(std::move(table)), names_(std::move(names)) {}

Result<std::vector<DiscoveredDevice>> PciDriver::Discover() {
  if (!sysfs_.Exists("bus/pci/devices")) {
    return Status::IoError("no " + sysfs_.root() + "/bus/pci/devices: not a sysfs tree");
  }
  std::vector<DiscoveredDevice> found;
  for (const std::string& address : sysfs_.List("bus/pci/devices")) {
    if (auto device = Describe(address)) found.push_back(std::move(*device));
  }
  return found;
}

// The device at `address` if it is an accelerator.
std::optional<DiscoveredDevice> PciDriver::Describe(const std::string& address) {
  const std::string dir = kDevices + address + "/";
  const auto class_code = ParseHex(sysfs_.Read(dir + "class"));
  const auto vendor = ParseHex(sysfs_.Read(dir + "vendor"));
  const auto product = ParseHex(sysfs_.Read(dir + "device"));
  if (!class_code || !vendor || !product) return std::nullopt;
  const auto kind = table_.Classify(*class_code, static_cast<uint16_t>(*vendor), static_cast<uint16_t>(*product));
  if (!kind) return std::nullopt;
  DiscoveredDevice d;
  d.address = address;
  d.uuid = NameBasedUuid(host_ + "/pci/" + address);
  d.name = Lowercase(kind->device_type) + "-" + address;
  d.device_type = kind->device_type;
  d.vendor_id = Hex4(static_cast<uint16_t>(*vendor));
  d.product_id = Hex4(static_cast<uint16_t>(*product));
  d.acc_type = kind->acc_type.empty() ? "pci-" + d.vendor_id + "-" + d.product_id : kind->acc_type;
  d.kernel_driver = sysfs_.LinkName(dir + "driver").value_or("");
  d.model = names_->Model(static_cast<uint16_t>(*vendor), static_cast<uint16_t>(*product));
  d.numa_node = ParseNumaNode(sysfs_.Read(dir + "numa_node"));
  d.iommu_group = sysfs_.LinkName(dir + "iommu_group").value_or("");
  d.physfn = sysfs_.LinkName(dir + "physfn").value_or("");
  return d;
}

Result<std::string> PciDriver::Attach(const std::string& address, const AttachTarget&) {
  return Status::IoError("pci " + address + ": attaching through the pci driver is not built yet");
}

Status PciDriver::Detach(const std::string& address) {
  return Status::IoError("pci " + address + ": detaching through the pci driver is not built yet");
}

}  // namespace cyborgfs
