// GET /metrics: the host's accelerators and the daemon's work in the
// Prometheus text format (version 0.0.4), written by prometheus-cpp's
// TextSerializer from a registry made afresh for each scrape.
//
//   cyborgfs_accelerator_info{UUID,name,device_type,vendor_id,product_id,pci_bus_id,numa_node,Hostname} 1
//   cyborgfs_accelerator_state{UUID,Hostname,state}    1 for its state, 0 for the others
//   cyborgfs_accelerator_health{UUID,Hostname,health}  1 for its health, 0 for the others
//   cyborgfs_accelerator_maintenance{UUID,Hostname}    1 out of service, 0 in
//   cyborgfs_pcie_aer_errors_total{UUID,Hostname,severity}  since boot, where the device counts them
//   cyborgfs_requests_total{op}                        FUSE requests answered, per operation (the stats file)
//   cyborgfs_store_commits_total                       SQLite transactions
//   cyborgfs_fleet_outbox_depth, cyborgfs_fleet_last_publish_timestamp_seconds   with --fleet
//
// Label names follow NVIDIA's DCGM exporter where it has one (UUID,
// pci_bus_id, Hostname), so that dashboards can join the two.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cyborgfs/accelerator.h"
#include "cyborgfs/values.h"

namespace cyborgfs::api {

struct MetricsInput {
  std::string host;
  std::vector<std::shared_ptr<const Accelerator>> accelerators;
  Json requests = Json::object();  // {"lookup": N, ...}
  uint64_t store_commits = 0;
  Json fleet;  // the drivers report's "fleet" part, or null without --fleet
};

// The exposition, ending with a newline.
std::string RenderMetrics(const MetricsInput& in);

}  // namespace cyborgfs::api
