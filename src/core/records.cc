#include "cyborgfs/records.h"

namespace cyborgfs {
namespace {

Json CountOrNull(int value) { return value < 0 ? Json() : Json(value); }

std::string Compact(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n"; }

Json ObjectOrNull(const std::string& compact) { return compact.empty() ? Json() : Json::parse(compact); }

}  // namespace

Json RecordOf(const Accelerator& a) {
  const HostFacts& f = a.facts;
  Json mdev_types;  // null for a device without mediated-device types, as the empty file
  for (const auto& [type, offer] : f.mdev_types) {
    mdev_types[type] = {{"name", offer.name}, {"available_instances", offer.available_instances}};
  }
  return {{"uuid", a.uuid},
          {"acc_specs", Json::parse(a.spec)},
          {"name", a.name},
          {"status", StateName(a.state)},
          {"attach", a.attachment},
          {"attach_handle", ObjectOrNull(a.attach_handle)},
          {"error", a.last_error},
          {"device_type", a.device_type},
          {"acc_type", a.acc_type},
          {"vendor_id", a.vendor_id},
          {"product_id", a.product_id},
          {"remotable", a.remotable ? 1 : 0},
          {"driver", f.kernel_driver},
          {"reported_by", a.driver},
          {"model", f.model},
          {"numa_node", CountOrNull(f.numa_node)},
          {"iommu_group", f.iommu_group},
          {"physfn", f.physfn},
          {"virtfns", f.virtfns},
          {"sriov_totalvfs", CountOrNull(f.sriov_totalvfs)},
          {"sriov_numvfs", CountOrNull(f.sriov_numvfs)},
          {"subsystem_id", f.subsystem_id},
          {"mdev_types", mdev_types},
          {"generation", a.generation},
          {"created_at", a.created_at},
          {"updated_at", a.updated_at}};
}

std::string RecordText(const Accelerator& a) { return Compact(RecordOf(a)); }

std::string ListBody(const std::vector<std::shared_ptr<const Accelerator>>& all) {
  Json records = Json::array();
  for (const auto& a : all) records.push_back(RecordOf(*a));
  return Compact(Json{{"accelerator", std::move(records)}});
}

}  // namespace cyborgfs
