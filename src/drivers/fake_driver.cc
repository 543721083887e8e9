// The fake driver: simulated PCI accelerators for demos and tests.
#include <cstdio>
#include <map>
#include <mutex>
#include <unordered_map>

#include "cyborgfs/drivers.h"
#include "cyborgfs/values.h"

namespace cyborgfs {
namespace {

struct Model {
  const char* device_type;
  const char* acc_type;
  const char* vendor_id;
  const char* product_id;
  const char* kernel_driver;
  const char* name;
};

// Real cards: NVIDIA Tesla V100, Intel PAC Arria 10, Intel QAT C62x.
constexpr Model kModels[] = {
    {"GPU", "nvidia-tesla-v100", "10de", "1db4", "nvidia", "NVIDIA Corporation GV100GL [Tesla V100 PCIe 16GB]"},
    {"FPGA", "intel-pac-arria10", "8086", "09c4", "dfl-pci", "Intel Corporation PAC with Intel Arria 10 GX FPGA"},
    {"CRYPTO", "intel-qat-c62x", "8086", "37c8", "c6xx", "Intel Corporation C62x Chipset QuickAssist Technology"},
};

class FakeDriver final : public Driver {
 public:
  FakeDriver(std::string host, int devices) : host_(std::move(host)) {
    for (int i = 0; i < devices; ++i) {
      const Model& model = kModels[i % std::size(kModels)];
      char address[32];
      // Eight functions per slot, as PCI has.
      std::snprintf(address, sizeof address, "0000:f0:%02x.%d", i / 8, i % 8);
      DiscoveredDevice d;
      d.address = address;
      d.uuid = NameBasedUuid(host_ + "/fake/" + d.address);
      d.name = Lowercase(model.device_type) + "-" + d.address;
      d.device_type = model.device_type;
      d.acc_type = model.acc_type;
      d.vendor_id = model.vendor_id;
      d.product_id = model.product_id;
      d.facts.kernel_driver = model.kernel_driver;
      d.facts.model = model.name;
      d.facts.numa_node = i % 2;
      d.facts.iommu_group = std::to_string(kFirstIommuGroup + i);
      d.facts.health = "ok";  // nothing of a fake device can fail
      by_address_.emplace(d.address, devices_.size());
      devices_.push_back(d);
    }
  }

  std::string Name() const override { return "fake"; }

  Result<std::vector<DiscoveredDevice>> Discover() override {
    std::lock_guard lock(mu_);
    std::vector<DiscoveredDevice> now = devices_;
    for (DiscoveredDevice& d : now) Bind(d);
    return now;
  }

  Result<DiscoveredDevice> Describe(const std::string& address) override {
    auto it = by_address_.find(address);
    if (it == by_address_.end()) return Status::NoDevice("no device at " + address);
    std::lock_guard lock(mu_);
    DiscoveredDevice d = devices_[it->second];
    Bind(d);
    return d;
  }

  bool Agrees(const DiscoveredDevice& observed, const AttachTarget* target, const std::string&) override {
    std::lock_guard lock(mu_);
    auto it = bound_.find(observed.address);
    if (!target) return it == bound_.end();
    return it != bound_.end() && it->second == target->ToString();
  }

  Result<std::string> Attach(const std::string& address, const AttachTarget& target, std::string&) override {
    if (!Known(address)) return Status::NoDevice("no device at " + address);
    if (target.kind == AttachTarget::Kind::kHost && target.id != Lowercase(host_)) {
      return Status::Invalid("can only attach to this host (" + host_ + "), not " + target.id);
    }
    std::lock_guard lock(mu_);
    auto [it, inserted] = bound_.emplace(address, target.ToString());
    if (!inserted && it->second != target.ToString()) {
      return Status::Busy(address + " is bound to " + it->second);
    }
    Json handle = {{"type", "TEST_PCI"}, {"address", address}};
    return handle.dump();
  }

  Status Detach(const std::string& address, std::string&) override {
    if (!Known(address)) return Status::NoDevice("no device at " + address);
    std::lock_guard lock(mu_);
    bound_.erase(address);
    return Status::Ok();
  }

 private:
  static constexpr int kFirstIommuGroup = 40;

  bool Known(const std::string& address) const { return by_address_.count(address) != 0; }

  // A device attached to a VM is bound to vfio-pci, as the pci driver does it.
  // REQUIRES: mu_
  void Bind(DiscoveredDevice& d) const {
    auto it = bound_.find(d.address);
    if (it != bound_.end() && it->second.rfind("vm ", 0) == 0) d.facts.kernel_driver = "vfio-pci";
  }

  const std::string host_;
  std::vector<DiscoveredDevice> devices_;               // immutable after construction
  std::unordered_map<std::string, size_t> by_address_;  // index into devices_
  std::mutex mu_;
  std::map<std::string, std::string> bound_;  // address -> target, REQUIRES: mu_
};

}  // namespace

std::unique_ptr<Driver> MakeFakeDriver(std::string host, int devices) {
  return std::make_unique<FakeDriver>(std::move(host), devices);
}

}  // namespace cyborgfs
