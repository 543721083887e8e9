// The fleet as this host last read it (--fleet): every host of the fleet's
// PostgreSQL, its lease, and the accelerators it published. Read-only: a
// host's accelerators change through that host.
//
// The accelerator requests of the fleet (accelerator_requests.h) are in the
// view too, as PostgreSQL had them at the same read: MOUNT/fleet/requests/
// shows them without waiting for PostgreSQL.
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

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cyborgfs/accelerator.h"
#include "cyborgfs/values.h"

namespace cyborgfs {

// An accelerator of the fleet, as its host published it; but while its host
// is down, nobody vouches for its health: the view shows it `unknown`, with
// the reason and what its host last said (HostDown()).
struct FleetAccelerator {
  uint64_t number = 0;
  std::string host;
  int64_t revision = 0;  // the row's fleet revision in PostgreSQL (+1 at every change)
  Accelerator record;    // the host's record (the values of its files)
  // While its host is down: the accelerator as published (record is then
  // HostDown()'s); null while its host is up.
  std::shared_ptr<const FleetAccelerator> published;
};

// `published` as shown while its host is down: health unknown, one reason,
// updated at `since` (unix seconds: when the view saw the host go down).
std::shared_ptr<const FleetAccelerator> HostDown(std::shared_ptr<const FleetAccelerator> published, int64_t since);

struct FleetHost {
  uint64_t number = 0;
  std::string name;
  bool up = false;               // its lease runs on the server's clock, as last read
  int64_t lease_expires_at = 0;  // unix seconds, the server's clock
  int64_t status_since = 0;      // unix seconds, this host's clock: when the view saw `up` last change
  uint64_t status_changes = 0;   // how often the view saw it change
  std::vector<std::shared_ptr<const FleetAccelerator>> accelerators;  // by number
};

// An accelerator request, as the fleet's PostgreSQL had it.
struct FleetRequest {
  uint64_t number = 0;
  int64_t revision = 0;  // the row's revision (+1 at every change)
  std::string uuid;
  Json record;  // as GET /fleet/accelerator_requests/{uuid} gives it
};

struct FleetView {
  std::vector<FleetHost> hosts;                                              // by number
  std::map<uint64_t, std::shared_ptr<const FleetAccelerator>> accelerators;  // every host's, by number
  std::unordered_map<std::string, size_t> host_index;                        // name -> index in hosts
  std::unordered_map<std::string, uint64_t> by_uuid;                         // uuid -> number
  std::unordered_map<uint64_t, size_t> host_by_number;                       // number -> index in hosts
  std::map<uint64_t, std::shared_ptr<const FleetRequest>> requests;          // by number
  std::unordered_map<std::string, uint64_t> request_by_uuid;                 // uuid -> number
  uint64_t revision = 0;                                                     // +1 at every change of the view
  uint64_t names_revision = 0;  // +1 when a host, an accelerator or a request comes or goes
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
  const FleetRequest* FindRequest(std::string_view uuid) const;
  const FleetRequest* FindRequestByNumber(uint64_t number) const;

  struct Rendered;
  std::shared_ptr<Rendered> rendered;  // ListBody()'s, made by IndexFleetView
};

// Where the current view is published; a published view has its indexes
// filled (IndexFleetView).
//
// Read your writes: a front end that changed the fleet (a request made or
// deleted through MOUNT/fleet/requests/) calls AwaitRead() before it
// replies, so that the change is in the view its caller looks at next.
//
// Thread safety: all methods may be called concurrently.
class FleetBoard {
 public:
  using View = std::shared_ptr<const FleetView>;
  FleetBoard();
  View Current() const;
  void Publish(View view);

  // Told of each Publish() with the view it replaced and the new one, on the
  // publishing thread (the reader's), before the next Publish(). Add
  // listeners before the reader starts.
  using Listener = std::function<void(const FleetView& before, const FleetView& after)>;
  void AddListener(Listener listener);

  // Wakes the reader and returns true once it has ended a read begun after
  // this call began (the view published then, if anything changed, is
  // Current()); false after `timeout`, or at once without a reader.
  bool AwaitRead(std::chrono::milliseconds timeout);

  // The reader's side: `wake` makes it read soon (nullptr: no reader). A
  // read takes BeginRead()'s ticket before its snapshot and gives it to
  // EndRead() once done (whether it published or not).
  void SetReader(std::function<void()> wake);
  uint64_t BeginRead();
  void EndRead(uint64_t ticket);

 private:
  mutable std::mutex mu_;
  View current_;                // REQUIRES: mu_
  std::function<void()> wake_;  // REQUIRES: mu_
  uint64_t asked_ = 0;          // REQUIRES: mu_; AwaitRead() calls so far
  uint64_t read_ = 0;           // REQUIRES: mu_; the highest ticket of an ended read
  std::condition_variable read_ended_;
  std::vector<Listener> listeners_;  // set before the reader starts
};

// Fills the view's indexes from hosts and accelerators.
void IndexFleetView(FleetView& view);

}  // namespace cyborgfs
