// Rendering of each accelerator file.
#include "cyborgfs/attributes.h"

#include "cyborgfs/values.h"

namespace cyborgfs {
namespace {

std::string Line(const std::string& value) { return value.empty() ? std::string() : value + "\n"; }

std::string RenderName(const Accelerator& a) { return a.name_bytes.value_or(a.name + "\n"); }
std::string RenderSpec(const Accelerator& a) { return a.spec_bytes ? *a.spec_bytes : RenderJson(Json::parse(a.spec)); }
// Detached reads 0 bytes, however the detach was written.
std::string RenderAttach(const Accelerator& a) {
  return a.attachment.empty() ? std::string() : a.attach_bytes.value_or(a.attachment + "\n");
}
std::string RenderStatus(const Accelerator& a) { return std::string(StateName(a.state)) + "\n"; }
std::string RenderError(const Accelerator& a) { return Line(a.last_error); }
std::string RenderDeviceType(const Accelerator& a) { return Line(a.device_type); }
std::string RenderAccType(const Accelerator& a) { return Line(a.acc_type); }
std::string RenderVendorId(const Accelerator& a) { return Line(a.vendor_id); }
std::string RenderProductId(const Accelerator& a) { return Line(a.product_id); }
std::string RenderRemotable(const Accelerator& a) { return a.remotable ? "1\n" : "0\n"; }
std::string Count(int value) { return value < 0 ? std::string() : std::to_string(value) + "\n"; }

std::string RenderDriver(const Accelerator& a) { return Line(a.facts.kernel_driver); }
std::string RenderReportedBy(const Accelerator& a) { return Line(a.driver); }
std::string RenderModel(const Accelerator& a) { return Line(a.facts.model); }
std::string RenderNumaNode(const Accelerator& a) { return Count(a.facts.numa_node); }
std::string RenderIommuGroup(const Accelerator& a) { return Line(a.facts.iommu_group); }
std::string RenderPhysfn(const Accelerator& a) { return Line(a.facts.physfn); }
std::string RenderSriovTotalvfs(const Accelerator& a) { return Count(a.facts.sriov_totalvfs); }
std::string RenderSriovNumvfs(const Accelerator& a) { return Count(a.facts.sriov_numvfs); }
std::string RenderSubsystemId(const Accelerator& a) { return Line(a.facts.subsystem_id); }
std::string RenderVirtfns(const Accelerator& a) {
  std::string lines;
  for (const std::string& vf : a.facts.virtfns) lines += vf + "\n";
  return lines;
}
std::string RenderMdevTypes(const Accelerator& a) {
  if (a.facts.mdev_types.empty()) return {};
  Json types = Json::object();
  for (const auto& [type, offer] : a.facts.mdev_types) {
    types[type] = {{"name", offer.name}, {"available_instances", offer.available_instances}};
  }
  return RenderJson(types);
}
std::string RenderMaintenance(const Accelerator& a) { return a.maintenance ? "1\n" : "0\n"; }
// The state, then one reason per line.
std::string RenderHealth(const Accelerator& a) {
  std::string lines = a.facts.health + "\n";
  for (const std::string& reason : a.facts.health_reasons) lines += reason + "\n";
  return lines;
}
std::string RenderAttachHandle(const Accelerator& a) {
  return a.attach_handle.empty() ? std::string() : RenderJson(Json::parse(a.attach_handle));
}

const std::vector<AttrInfo> kAttributes = {
    {Attr::kName, "name", 0644, WriteKind::kText, RenderName},
    {Attr::kSpec, "spec", 0644, WriteKind::kDocument, RenderSpec},
    {Attr::kAttach, "attach", 0644, WriteKind::kText, RenderAttach},
    {Attr::kStatus, "status", 0444, WriteKind::kReadOnly, RenderStatus},
    {Attr::kError, "error", 0444, WriteKind::kReadOnly, RenderError},
    {Attr::kDeviceType, "device_type", 0444, WriteKind::kReadOnly, RenderDeviceType},
    {Attr::kAccType, "acc_type", 0444, WriteKind::kReadOnly, RenderAccType},
    {Attr::kVendorId, "vendor_id", 0444, WriteKind::kReadOnly, RenderVendorId},
    {Attr::kProductId, "product_id", 0444, WriteKind::kReadOnly, RenderProductId},
    {Attr::kRemotable, "remotable", 0444, WriteKind::kReadOnly, RenderRemotable},
    {Attr::kDriver, "driver", 0444, WriteKind::kReadOnly, RenderDriver},
    {Attr::kAttachHandle, "attach_handle", 0444, WriteKind::kReadOnly, RenderAttachHandle},
    {Attr::kReportedBy, "reported_by", 0444, WriteKind::kReadOnly, RenderReportedBy},
    {Attr::kModel, "model", 0444, WriteKind::kReadOnly, RenderModel},
    {Attr::kNumaNode, "numa_node", 0444, WriteKind::kReadOnly, RenderNumaNode},
    {Attr::kIommuGroup, "iommu_group", 0444, WriteKind::kReadOnly, RenderIommuGroup},
    {Attr::kPhysfn, "physfn", 0444, WriteKind::kReadOnly, RenderPhysfn},
    {Attr::kMdevTypes, "mdev_types", 0444, WriteKind::kReadOnly, RenderMdevTypes},
    {Attr::kVirtfns, "virtfns", 0444, WriteKind::kReadOnly, RenderVirtfns},
    {Attr::kSriovTotalvfs, "sriov_totalvfs", 0444, WriteKind::kReadOnly, RenderSriovTotalvfs},
    {Attr::kSriovNumvfs, "sriov_numvfs", 0444, WriteKind::kReadOnly, RenderSriovNumvfs},
    {Attr::kSubsystemId, "subsystem_id", 0444, WriteKind::kReadOnly, RenderSubsystemId},
    {Attr::kHealth, "health", 0444, WriteKind::kReadOnly, RenderHealth},
    {Attr::kMaintenance, "maintenance", 0644, WriteKind::kText, RenderMaintenance},
};

}  // namespace

const std::vector<AttrInfo>& Attributes() { return kAttributes; }

const AttrInfo& AttributeInfo(Attr attr) { return kAttributes[static_cast<size_t>(attr)]; }

const AttrInfo* FindAttribute(std::string_view name) {
  for (const AttrInfo& info : kAttributes) {
    if (name == info.name) return &info;
  }
  return nullptr;
}

}  // namespace cyborgfs
