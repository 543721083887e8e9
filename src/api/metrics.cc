#include "metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace cyborgfs::api {
namespace {

// One sample per value of `label`: 1 for `current`, 0 for the others.
template <typename Values, typename Name>
void OneHot(prometheus::Family<prometheus::Gauge>& family, const prometheus::Labels& id, const char* label,
            const Values& values, Name name, const std::string& current) {
  for (const auto& value : values) {
    auto labels = id;
    labels[label] = name(value);
    family.Add(labels).Set(labels[label] == current ? 1 : 0);
  }
}

}  // namespace

std::string RenderMetrics(const MetricsInput& in) {
  prometheus::Registry registry;
  auto& info = prometheus::BuildGauge()
                   .Name("cyborgfs_accelerator_info")
                   .Help("An accelerator of this host (always 1), with what it is")
                   .Register(registry);
  auto& state = prometheus::BuildGauge()
                    .Name("cyborgfs_accelerator_state")
                    .Help("1 for the accelerator's state, 0 for the others")
                    .Register(registry);
  auto& health = prometheus::BuildGauge()
                     .Name("cyborgfs_accelerator_health")
                     .Help("1 for the accelerator's health, 0 for the others (the health file)")
                     .Register(registry);
  auto& maintenance = prometheus::BuildGauge()
                          .Name("cyborgfs_accelerator_maintenance")
                          .Help("1 while the accelerator is out of service (the maintenance file)")
                          .Register(registry);
  auto& aer = prometheus::BuildCounter()
                  .Name("cyborgfs_pcie_aer_errors_total")
                  .Help("PCIe AER errors the device counted since boot, by severity")
                  .Register(registry);
  for (const auto& a : in.accelerators) {
    const prometheus::Labels id{{"UUID", a->uuid}, {"Hostname", in.host}};
    info.Add({{"UUID", a->uuid},
              {"Hostname", in.host},
              {"name", a->name},
              {"device_type", a->device_type},
              {"vendor_id", a->vendor_id},
              {"product_id", a->product_id},
              {"pci_bus_id", a->driver_address},
              {"numa_node", a->facts.numa_node < 0 ? "" : std::to_string(a->facts.numa_node)}})
        .Set(1);
    OneHot(state, id, "state", kStates, StateName, StateName(a->state));
    OneHot(
        health, id, "health", kHealths, [](const char* h) { return h; }, a->facts.health);
    maintenance.Add(id).Set(a->maintenance ? 1 : 0);
    for (auto [severity, count] :
         {std::pair{"correctable", a->facts.aer_correctable}, std::pair{"nonfatal", a->facts.aer_nonfatal},
          std::pair{"fatal", a->facts.aer_fatal}}) {
      if (count < 0) continue;  // the device counts none
      auto labels = id;
      labels["severity"] = severity;
      aer.Add(labels).Increment(static_cast<double>(count));
    }
  }
  auto& requests = prometheus::BuildCounter()
                       .Name("cyborgfs_requests_total")
                       .Help("FUSE requests the daemon answered, per operation (the stats file)")
                       .Register(registry);
  for (const auto& [op, count] : in.requests.items()) {
    if (count.is_number_unsigned() || count.is_number_integer()) {
      requests.Add({{"op", op}}).Increment(count.get<double>());
    }
  }
  prometheus::BuildCounter()
      .Name("cyborgfs_store_commits_total")
      .Help("SQLite transactions committed (a group commit counts once)")
      .Register(registry)
      .Add({})
      .Increment(static_cast<double>(in.store_commits));
  if (in.fleet.is_object()) {
    prometheus::BuildGauge()
        .Name("cyborgfs_fleet_outbox_depth")
        .Help("Local changes not yet published to the fleet's PostgreSQL")
        .Register(registry)
        .Add({})
        .Set(in.fleet.value("outbox", 0.0));
    const Json& at = in.fleet.contains("published_at") ? in.fleet["published_at"] : Json();
    prometheus::BuildGauge()
        .Name("cyborgfs_fleet_last_publish_timestamp_seconds")
        .Help("When the fleet's PostgreSQL last took a publication (unix seconds; 0: not yet)")
        .Register(registry)
        .Add({})
        .Set(at.is_number() ? at.get<double>() : 0);
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry.Collect());
  return out.str();
}

}  // namespace cyborgfs::api
