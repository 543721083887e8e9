#include "pci_driver.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <thread>

#include "cyborgfs/values.h"

namespace cyborgfs {
namespace {

constexpr const char* kDevices = "bus/pci/devices/";

}  // namespace

PciDriver::PciDriver(std::string host, Sysfs sysfs, DeviceTable table, std::unique_ptr<PciNames> names, int settle_ms)
    : host_(std::move(host)),
      sysfs_(std::move(sysfs)),
      table_(std::move(table)),
      names_(std::move(names)),
      settle_ms_(settle_ms) {}

Result<std::vector<DiscoveredDevice>> PciDriver::Discover() {
  if (!sysfs_.Exists("bus/pci/devices")) {
    return Status::IoError("no " + sysfs_.root() + "/bus/pci/devices: not a sysfs tree");
  }
  std::vector<DiscoveredDevice> found;
  const std::vector<std::string> addresses = sysfs_.List("bus/pci/devices");
  for (const std::string& address : addresses) {
    std::string why_not;
    if (auto device = Read(address, true, &why_not)) {
      found.push_back(std::move(*device));
    } else {
      spdlog::debug("pci: {} is not taken: {}", address, why_not);
    }
  }
  // Said once at info (the first discovery, at start), then at each rescan at debug.
  spdlog::log(said_what_it_sees_.exchange(true) ? spdlog::level::debug : spdlog::level::info,
              "pci: {} PCI devices under {}/bus/pci/devices, {} of them accelerators", addresses.size(), sysfs_.root(),
              found.size());
  return found;
}

std::vector<std::string> PciDriver::Health() {
  std::vector<std::string> problems;
  if (!sysfs_.Exists("bus/pci/devices")) {
    problems.push_back("no " + sysfs_.root() + "/bus/pci/devices: not a sysfs tree");
    return problems;
  }
  if (!sysfs_.Exists("bus/pci/drivers/vfio-pci")) {
    problems.push_back("vfio-pci is not loaded (modprobe vfio-pci): VM attaches will fail");
  }
  if (sysfs_.List("kernel/iommu_groups").empty()) {
    problems.push_back("no IOMMU groups: VM passthrough needs the IOMMU on (intel_iommu=on or amd_iommu=on)");
  }
  return problems;
}

Result<DiscoveredDevice> PciDriver::Describe(const std::string& address) {
  auto device = Read(address, false);
  if (!device) return Status::NoDevice("no accelerator at " + address);
  return std::move(*device);
}

// The device at `address` if it is an accelerator; else why not, in `why_not`.
std::optional<DiscoveredDevice> PciDriver::Read(const std::string& address, bool rescan, std::string* why_not) {
  const std::string dir = kDevices + address + "/";
  const auto class_code = ParseSysfsHex(sysfs_.Read(dir + "class"));
  const auto vendor = ParseSysfsHex(sysfs_.Read(dir + "vendor"));
  const auto product = ParseSysfsHex(sysfs_.Read(dir + "device"));
  if (!class_code || !vendor || !product) {
    if (why_not) *why_not = "its class, vendor or device file is missing or not hex";
    return std::nullopt;
  }
  const auto kind = table_.Classify(*class_code, static_cast<uint16_t>(*vendor), static_cast<uint16_t>(*product));
  if (!kind) {
    if (why_not) {
      char said[160];
      std::snprintf(said, sizeof said,
                    "%04x:%04x, class 0x%06x: not an accelerator class, and the device table does not list it as one",
                    *vendor, *product, *class_code);
      *why_not = said;
    }
    return std::nullopt;
  }
  DiscoveredDevice d;
  d.address = address;
  d.uuid = NameBasedUuid(host_ + "/pci/" + address);
  d.name = Lowercase(kind->device_type) + "-" + address;
  d.device_type = kind->device_type;
  d.vendor_id = Hex4(static_cast<uint16_t>(*vendor));
  d.product_id = Hex4(static_cast<uint16_t>(*product));
  d.acc_type = kind->acc_type.empty() ? "pci-" + d.vendor_id + "-" + d.product_id : kind->acc_type;
  d.facts.kernel_driver = sysfs_.LinkName(dir + "driver").value_or("");
  d.facts.model = names_->Model(static_cast<uint16_t>(*vendor), static_cast<uint16_t>(*product));
  d.facts.numa_node = ParseSysfsCount(sysfs_.Read(dir + "numa_node"));
  d.facts.iommu_group = sysfs_.LinkName(dir + "iommu_group").value_or("");
  d.facts.physfn = sysfs_.LinkName(dir + "physfn").value_or("");
  for (const std::string& entry : sysfs_.List(dir)) {
    if (entry.rfind("virtfn", 0) == 0) {
      if (auto vf = sysfs_.LinkName(dir + entry)) d.facts.virtfns.push_back(*vf);
    }
  }
  std::sort(d.facts.virtfns.begin(), d.facts.virtfns.end());
  d.facts.sriov_totalvfs = ParseSysfsCount(sysfs_.Read(dir + "sriov_totalvfs"));
  d.facts.sriov_numvfs = ParseSysfsCount(sysfs_.Read(dir + "sriov_numvfs"));
  const auto sub_vendor = ParseSysfsHex(sysfs_.Read(dir + "subsystem_vendor"));
  const auto sub_device = ParseSysfsHex(sysfs_.Read(dir + "subsystem_device"));
  if (sub_vendor && sub_device && (*sub_vendor || *sub_device)) {
    d.facts.subsystem_id = Hex4(static_cast<uint16_t>(*sub_vendor)) + ":" + Hex4(static_cast<uint16_t>(*sub_device));
  }
  for (const std::string& type : sysfs_.List(dir + "mdev_supported_types")) {
    const std::string t = dir + "mdev_supported_types/" + type + "/";
    d.facts.mdev_types[type] = {sysfs_.Read(t + "name").value_or(type),
                                std::max(0, ParseSysfsCount(sysfs_.Read(t + "available_instances")))};
  }
  ReadSignals(address, rescan, d.facts);
  return d;
}

// --- health ---------------------------------------------------------------------

namespace {

auto Rank(const std::string& health) {  // its place in kHealths
  return std::find_if(std::begin(kHealths), std::end(kHealths), [&](const char* h) { return health == h; }) -
         std::begin(kHealths);
}

// One signal's verdict: the worst so far decides.
void Judged(HostFacts& facts, const char* health, std::string reason) {
  if (Rank(health) > Rank(facts.health)) facts.health = health;
  facts.health_reasons.push_back(std::move(reason));
}

// The TOTAL_ERR_* line of an aer_dev_* file ("TOTAL_ERR_COR 5").
std::optional<int64_t> AerTotal(const std::string& text) {
  size_t at = text.find("TOTAL_ERR_");
  if (at == std::string::npos) return std::nullopt;
  at = text.find(' ', at);
  if (at == std::string::npos) return std::nullopt;
  const char* start = text.c_str() + at + 1;
  char* end = nullptr;
  const long long n = std::strtoll(start, &end, 10);
  if (end == start || n < 0) return std::nullopt;
  return static_cast<int64_t>(n);
}

// "16.0 GT/s PCIe" -> 16; nullopt for what is not a speed ("Unknown").
std::optional<double> LinkSpeed(const std::string& text) {
  char* end = nullptr;
  const double speed = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || speed <= 0) return std::nullopt;
  return speed;
}

std::string Speed(double gts) {
  char text[32];
  std::snprintf(text, sizeof text, "%g GT/s", gts);
  return text;
}

}  // namespace

void PciDriver::ReadSignals(const std::string& address, bool rescan, HostFacts& facts) {
  const std::string dir = kDevices + address + "/";
  facts.health = "ok";
  facts.health_reasons.clear();
  // A file the device has that cannot be read is unknown; one it has not is no signal.
  auto read = [&](const std::string& file) -> std::optional<std::string> {
    if (!sysfs_.Exists(dir + file)) return std::nullopt;
    auto text = sysfs_.Read(dir + file);
    if (!text) Judged(facts, "unknown", file + " cannot be read");
    return text;
  };
  struct Aer {
    const char* file;
    const char* words;
    const char* health;
    int64_t HostFacts::*total;
  };
  static constexpr Aer kAer[] = {
      {"aer_dev_correctable", "correctable", "degraded", &HostFacts::aer_correctable},
      {"aer_dev_nonfatal", "nonfatal", "degraded", &HostFacts::aer_nonfatal},
      {"aer_dev_fatal", "fatal", "failed", &HostFacts::aer_fatal},
  };
  std::array<std::optional<int64_t>, 3> totals;
  for (size_t k = 0; k < 3; ++k) {
    facts.*kAer[k].total = -1;
    auto text = read(kAer[k].file);
    if (!text) continue;
    totals[k] = AerTotal(*text);
    if (!totals[k]) Judged(facts, "unknown", std::string(kAer[k].file) + " has no TOTAL_ERR_ line");
    if (totals[k]) facts.*kAer[k].total = *totals[k];
  }
  {
    std::lock_guard lock(aer_mu_);
    auto [seen, first] = aer_.try_emplace(address);
    for (size_t k = 0; k < 3; ++k) {
      if (!totals[k]) continue;
      int64_t& base = seen->second.at_rescan[k];
      if (first) base = *totals[k];                                             // first look: no count yet
      const int64_t now = *totals[k] >= base ? *totals[k] - base : *totals[k];  // lower: the device was reset
      const int64_t errors = rescan ? now : seen->second.that_rescan[k] + now;
      if (rescan) {
        base = *totals[k];
        seen->second.that_rescan[k] = now;
      }
      if (errors > 0) {
        Judged(facts, kAer[k].health,
               "pcie aer: " + std::to_string(errors) + " " + kAer[k].words + " error" + (errors == 1 ? "" : "s") +
                   " since the last rescan");
      }
    }
  }
  if (auto power = read("power_state")) {
    if (*power == "error") Judged(facts, "failed", "power state error");
    if (*power == "unknown") Judged(facts, "unknown", "power state unknown");
  }
  const auto speed = read("current_link_speed"), max_speed = read("max_link_speed");
  const auto width = read("current_link_width"), max_width = read("max_link_width");
  if (speed && max_speed && width && max_width) {
    const auto s = LinkSpeed(*speed), ms = LinkSpeed(*max_speed);
    const int w = ParseSysfsCount(width), mw = ParseSysfsCount(max_width);
    const bool unknown_speed = *speed == "Unknown" || *max_speed == "Unknown" || speed->rfind("Unknown", 0) == 0;
    if (!unknown_speed && (!s || !ms || w < 0 || mw < 0)) {
      Judged(facts, "unknown", "pcie link: speed or width unreadable (" + *speed + ", x" + *width + ")");
    } else if (!unknown_speed && mw > 0 && (*s < *ms || w < mw)) {
      Judged(facts, "degraded",
             "pcie link at " + Speed(*s) + " x" + std::to_string(w) + ", capable of " + Speed(*ms) + " x" +
                 std::to_string(mw));
    }
  }
  if (auto qat = read("qat/state"); qat && *qat != "up") Judged(facts, "failed", "qat state " + *qat);
}

void PciDriver::JudgeHealth(const std::string& address, const AttachTarget* target, const std::string& memory,
                            HostFacts& facts) const {
  DiscoveredDevice observed;
  observed.address = address;
  observed.facts = facts;
  if (!Holds(observed, target, memory)) {
    const std::string bound = facts.kernel_driver.empty() ? "no driver" : facts.kernel_driver;
    if (target) {
      Judged(facts, "failed", "bound to " + bound + ", not as its attachment to " + target->ToString() + " needs");
    } else {
      Judged(facts, "degraded", "bound to " + bound + " while detached (the next rescan releases it)");
    }
  }
  if (target && sysfs_.Read(kDevices + address + "/power_state").value_or("") == "D3cold") {
    Judged(facts, "degraded", "power state D3cold while attached");
  }
}

// --- attaching -----------------------------------------------------------------

// The control-file writes of one attach or detach, with what undoes each.
// A step is a write whose effect is checked; when one fails, Undo() runs the
// undo writes of the steps done, newest first.
class PciDriver::Steps {
 public:
  explicit Steps(const Sysfs& sysfs) : sysfs_(sysfs) {}

  // Writes `value` to `file`; then `check` must hold. `undo` (file, value)
  // is remembered for Undo(). kIoError "<what>: <why>" otherwise.
  template <typename Check>
  Status Do(const std::string& what, const std::string& file, const std::string& value, Check check,
            std::pair<std::string, std::string> undo = {}) {
    if (Status s = sysfs_.Write(file, value); !s.ok()) return Status::IoError(what + " failed: " + s.message());
    if (!undo.first.empty()) undone_.push_back(std::move(undo));
    if (!check()) return Status::IoError(what + " failed: " + failure_);
    return Status::Ok();
  }

  void ExpectDriver(std::string failure) { failure_ = std::move(failure); }

  // Undoes what was done; returns `why`, saying so.
  Status Undo(Status why) {
    std::string undo_errors;
    for (auto it = undone_.rbegin(); it != undone_.rend(); ++it) {
      if (Status s = sysfs_.Write(it->first, it->second); !s.ok()) undo_errors += "; undo: " + s.message();
    }
    undone_.clear();
    return Status::IoError(why.message() + (undo_errors.empty() ? "; rolled back" : undo_errors));
  }

 private:
  const Sysfs& sysfs_;
  std::vector<std::pair<std::string, std::string>> undone_;
  std::string failure_;
};

std::string PciDriver::BoundDriver(const std::string& address) const {
  return sysfs_.LinkName(kDevices + address + "/driver").value_or("");
}

bool PciDriver::Eventually(const std::function<bool()>& condition) const {
  for (int waited = 0;; waited += 10) {
    if (condition()) return true;
    if (waited >= settle_ms_) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool PciDriver::Settles(const std::string& address, const std::string& expected) const {
  return Eventually([&] { return BoundDriver(address) == expected; });
}

namespace {

// A JSON object's text as an object ({} for anything else).
Json ObjectOf(const std::string& text) {
  Json parsed = Json::parse(text, nullptr, false);
  return parsed.is_object() ? parsed : Json::object();
}

// The string `key` of a JSON object's text; empty if there is none.
std::string StringField(const std::string& text, const char* key) {
  const Json object = ObjectOf(text);
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// The driver's memory of a device (see Driver): "native_driver", and "mdev"
// {"uuid", "type"} while a vGPU of it is attached.
Json Memory(const std::string& memory) { return ObjectOf(memory); }

std::string NativeDriver(const std::string& memory) { return StringField(memory, "native_driver"); }

void Remember(std::string& memory, const char* key, const Json& value) {
  Json remembered = Memory(memory);
  if (value.is_null()) {
    remembered.erase(key);
  } else {
    remembered[key] = value;
  }
  memory = remembered.dump();
}

// The vGPU type the spec asks for; empty for a whole device.
std::string VgpuType(const std::string& spec) { return StringField(spec, "vgpu_type"); }

constexpr const char* kVfio = "vfio-pci";

}  // namespace

Result<std::string> PciDriver::Attach(const std::string& address, const AttachTarget& target, std::string& memory) {
  const std::string dir = kDevices + address + "/";
  if (!sysfs_.Exists(dir)) return Status::NoDevice("no device at " + address);
  if (target.kind == AttachTarget::Kind::kHost && target.id != Lowercase(host_)) {
    return Status::Invalid("can only attach to this host (" + host_ + "), not " + target.id);
  }
  const std::string current = BoundDriver(address);
  if (NativeDriver(memory).empty() && !current.empty() && current != kVfio) Remember(memory, "native_driver", current);
  const std::string native = NativeDriver(memory);
  Steps steps(sysfs_);
  if (target.kind == AttachTarget::Kind::kHost) {
    if (current != native || current.empty()) {
      if (native.empty()) return Status::IoError(address + " has no driver of its own to bind for the host");
      if (Status s = BindNative(steps, address, native); !s.ok()) return steps.Undo(s);
    }
    return Json({{"type", "HOST"}, {"address", address}, {"driver", native}}).dump();
  }
  if (const std::string type = VgpuType(target.spec); !type.empty()) return AttachVgpu(address, type, memory);
  if (current != kVfio) {
    if (!current.empty()) {
      steps.ExpectDriver("the device is still bound to " + current);
      Status s = steps.Do("unbind from " + current, "bus/pci/drivers/" + current + "/unbind", address,
                          [&] { return Settles(address, ""); }, {"bus/pci/drivers/" + current + "/bind", address});
      if (!s.ok()) return steps.Undo(s);
    }
    Status s = steps.Do("set driver_override", dir + "driver_override", kVfio, [] { return true; },
                        {dir + "driver_override", ""});
    if (!s.ok()) return steps.Undo(s);
    steps.ExpectDriver("drivers_probe bound nothing: is vfio-pci loaded (modprobe vfio-pci)?");
    s = steps.Do("drivers_probe", "bus/pci/drivers_probe", address, [&] { return Settles(address, kVfio); },
                 {"bus/pci/drivers/vfio-pci/unbind", address});
    if (!s.ok()) return steps.Undo(s);
  }
  Json handle = {{"type", "PCI"}, {"address", address}};
  if (const int group = ParseSysfsCount(sysfs_.LinkName(dir + "iommu_group")); group >= 0)
    handle["iommu_group"] = group;
  return handle.dump();
}

// A vGPU for a VM: a mediated device of `type` on the GPU at `address`, its
// uuid derived from host, address and type (the same after a reboot).
Result<std::string> PciDriver::AttachVgpu(const std::string& address, const std::string& type, std::string& memory) {
  const std::string types = kDevices + address + "/mdev_supported_types/";
  if (!sysfs_.Exists(types + type)) {
    const auto offered = sysfs_.List(types);
    std::string list;
    for (const auto& t : offered) list += (list.empty() ? "" : ", ") + t;
    return Status::Invalid("vgpu_type \"" + type + "\" is not offered by " + address +
                           (list.empty() ? " (it offers no vGPU types)" : " (it offers " + list + ")"));
  }
  const std::string uuid = NameBasedUuid(host_ + "/pci/" + address + "/" + type);
  const std::string device = "bus/mdev/devices/" + uuid;
  if (!sysfs_.Exists(device)) {
    if (Status s = sysfs_.Write(types + type + "/create", uuid); !s.ok()) {
      return Status::IoError("create the " + type + " vGPU failed: " + s.message());
    }
    if (!Appears(device, true))
      return Status::IoError("create the " + type + " vGPU failed: no " + device + " appeared");
  }
  Remember(memory, "mdev", Json{{"uuid", uuid}, {"type", type}});
  return Json({{"type", "MDEV"}, {"uuid", uuid}, {"mdev_type", type}, {"address", address}}).dump();
}

std::optional<std::string> PciDriver::VgpuPresent(const std::string& memory) const {
  const Json mdev = Memory(memory).value("mdev", Json::object());
  if (!mdev.contains("uuid") || !mdev["uuid"].is_string()) return std::nullopt;
  if (!sysfs_.Exists("bus/mdev/devices/" + mdev["uuid"].get<std::string>())) return std::nullopt;
  return mdev.value("type", "");
}

bool PciDriver::Agrees(const DiscoveredDevice& observed, const AttachTarget* target, const std::string& memory) {
  return Holds(observed, target, memory);
}

bool PciDriver::Holds(const DiscoveredDevice& observed, const AttachTarget* target, const std::string& memory) const {
  const std::string& bound = observed.facts.kernel_driver;
  const std::string native = NativeDriver(memory);
  const auto vgpu = VgpuPresent(memory);
  if (!target) {
    const bool overridden = sysfs_.Read(kDevices + observed.address + "/driver_override").value_or("") == kVfio;
    const bool orphaned = bound.empty() && !native.empty();
    return bound != kVfio && !overridden && !orphaned && !vgpu;
  }
  if (target->kind == AttachTarget::Kind::kHost)
    return !bound.empty() && bound != kVfio && (native.empty() || bound == native);
  if (const std::string type = VgpuType(target->spec); !type.empty()) return vgpu == type;
  return bound == kVfio;
}

// Removes the vGPU the memory names, if it exists.
Status PciDriver::RemoveVgpu(std::string& memory) {
  const Json mdev = Memory(memory).value("mdev", Json::object());
  if (!mdev.contains("uuid") || !mdev["uuid"].is_string()) return Status::Ok();
  const std::string device = "bus/mdev/devices/" + mdev["uuid"].get<std::string>();
  if (sysfs_.Exists(device)) {
    if (Status s = sysfs_.Write(device + "/remove", "1"); !s.ok()) {
      return Status::IoError("remove the vGPU failed: " + s.message());
    }
    if (!Appears(device, false)) return Status::IoError("remove the vGPU failed: " + device + " is still there");
  }
  Remember(memory, "mdev", Json());
  return Status::Ok();
}

bool PciDriver::Appears(const std::string& path, bool present) const {
  return Eventually([&] { return sysfs_.Exists(path) == present; });
}

Status PciDriver::Detach(const std::string& address, std::string& memory) {
  const std::string dir = kDevices + address + "/";
  if (!sysfs_.Exists(dir)) return Status::NoDevice("no device at " + address);
  const std::string current = BoundDriver(address);
  if (Status s = RemoveVgpu(memory); !s.ok()) return s;
  const bool overridden = sysfs_.Read(dir + "driver_override").value_or("") == kVfio;
  const std::string native = NativeDriver(memory);
  // Unbound from its own driver and not yet given to vfio-pci: a crash in the
  // middle of an attach.
  const bool orphaned = current.empty() && !native.empty();
  if (current != kVfio && !overridden && !orphaned) return Status::Ok();  // not held for a VM
  Steps steps(sysfs_);
  if (!current.empty()) {
    steps.ExpectDriver("the device is still bound to " + current);
    Status s = steps.Do("unbind from " + current, "bus/pci/drivers/" + current + "/unbind", address,
                        [&] { return Settles(address, ""); }, {"bus/pci/drivers/" + current + "/bind", address});
    if (!s.ok()) return steps.Undo(s);
  }
  Status s = steps.Do("clear driver_override", dir + "driver_override", "", [] { return true; },
                      {dir + "driver_override", overridden ? kVfio : ""});
  if (!s.ok()) return steps.Undo(s);
  if (native.empty()) {
    // Its driver was never recorded (a crash in the middle of the first
    // attach): the kernel picks one by the device's ids.
    return sysfs_.Write("bus/pci/drivers_probe", address);
  }
  s = BindNative(steps, address, native);
  return s.ok() ? s : steps.Undo(s);
}

// Binds the device to `native` by drivers/<native>/bind, or else by
// drivers_probe (which picks the driver by the device's ids).
Status PciDriver::BindNative(Steps& steps, const std::string& address, const std::string& native) {
  steps.ExpectDriver("the device is not bound to " + native);
  Status bound = steps.Do("bind to " + native, "bus/pci/drivers/" + native + "/bind", address,
                          [&] { return Settles(address, native); });
  if (bound.ok()) return bound;
  Status probed = steps.Do("drivers_probe", "bus/pci/drivers_probe", address, [&] { return Settles(address, native); });
  return probed.ok() ? probed : Status::IoError(bound.message() + "; then " + probed.message());
}

}  // namespace cyborgfs
