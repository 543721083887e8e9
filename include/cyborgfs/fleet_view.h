// The fleet as this host last read it (--fleet): every host of the fleet's
// PostgreSQL, its lease, and the accelerators it published. Read-only: a
// host's accelerators change through that host.
//
// A FleetView is an immutable value: the reader (src/fleet/fleet_reader.h)
// builds a new one whenever what it reads differs, and publishes it on the
// FleetBoard; the front ends (MOUNT/fleet/, GET /fleet/...) take the current
// one and never wait for PostgreSQL. Nothing here knows of PostgreSQL.
//
// Numbers: each host and each accelerator uuid gets a number the first time
// the reader sees it, never reused while the daemon runs (the files' inode
// numbers and listing cookies come from them).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cyborgfs/accelerator.h"

namespace cyborgfs {

// An accelerator of the fleet, as its host published it.
struct FleetAccelerator {
  uint64_t number = 0;
  std::string host;
  int64_t revision = 0;  // the row's fleet revision in PostgreSQL (+1 at every change)
  Accelerator record;    // the host's record (the values of its files)
};

struct FleetHost {
  uint64_t number = 0;
  std::string name;
  bool up = false;               // its lease runs on the server's clock, as last read
  int64_t lease_expires_at = 0;  // unix seconds, the server's clock
  int64_t status_since = 0;      // unix seconds, this host's clock: when the view saw `up` last change
  uint64_t status_changes = 0;   // how often the view saw it change
  std::vector<std::shared_ptr<const FleetAccelerator>> accelerators;  // by number
};

struct FleetView {
  std::vector<FleetHost> hosts;                                              // by number
  std::map<uint64_t, std::shared_ptr<const FleetAccelerator>> accelerators;  // every host's, by number
  std::unordered_map<std::string, size_t> host_index;                        // name -> index in hosts
  std::unordered_map<std::string, uint64_t> by_uuid;                         // uuid -> number
  std::unordered_map<uint64_t, size_t> host_by_number;                       // number -> index in hosts
  uint64_t revision = 0;                                                     // +1 at every change of the view
  uint64_t names_revision = 0;  // +1 when a host or an accelerator comes or goes
  int64_t read_at = 0;          // unix seconds: when it was last read (this host's clock)
  // {"accelerator": [record + "host" + "host_status", ...]} in the order of
  // numbers: MOUNT/fleet/accelerators.json and GET /fleet/accelerators.
  // Rendered at its first use (most views are replaced before anyone asks).
  std::shared_ptr<const std::string> ListBody() const;

  const FleetHost* Host(std::string_view name) const;
  const FleetHost* HostByNumber(uint64_t number) const;
  const FleetAccelerator* Find(std::string_view uuid) const;
  const FleetAccelerator* FindByNumber(uint64_t number) const;
  bool HostUp(const std::string& name) const;

  struct Rendered;
  std::shared_ptr<Rendered> rendered;  // ListBody()'s, made by IndexFleetView
};

// Where the current view is published; a published view has its indexes
// filled (IndexFleetView).
//
// Thread safety: all methods may be called concurrently.
class FleetBoard {
 public:
  using View = std::shared_ptr<const FleetView>;
  FleetBoard();
  View Current() const;
  void Publish(View view);

 private:
  mutable std::mutex mu_;
  View current_;  // REQUIRES: mu_
};

// Fills the view's indexes from hosts and accelerators.
void IndexFleetView(FleetView& view);

}  // namespace cyborgfs
