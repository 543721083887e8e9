// The accelerator record: what the store keeps and the core serves.
//
// One Accelerator is one row of the `accelerators` table. It is a plain value:
// the core hands out immutable snapshots (std::shared_ptr<const Accelerator>)
// and replaces them whole on every change, so a reader never sees half of one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "cyborgfs/host_facts.h"

namespace cyborgfs {

// The lifecycle states; cyborgfs/lifecycle.h documents the transitions.
enum class State { kAvailable, kAttached, kOffline, kError };
inline constexpr State kStates[] = {State::kAvailable, State::kAttached, State::kOffline, State::kError};

const char* StateName(State state);
std::optional<State> StateFromName(const std::string& name);

struct Accelerator {
  int64_t id = 0;           // accelerator_id: SQLite rowid, never reused
  std::string uuid;         // lowercase canonical 8-4-4-4-12
  std::string name;         // unique; validated by ValidateName()
  std::string spec = "{}";  // acc_specs, compact canonical JSON object

  // The Cyborg columns. device_type, acc_type, acc_capability and remotable are
  // derived from the spec, falling back to what the driver reported.
  std::string device_type;
  std::string acc_type;
  std::string acc_capability = "{}";  // compact JSON object
  std::string vendor_id;              // 4 lowercase hex digits or empty
  std::string product_id;             // 4 lowercase hex digits or empty
  bool remotable = false;

  State state = State::kAvailable;
  std::string attachment;     // canonical "vm <uuid>" / "host <name>"; empty = detached
  std::string attach_handle;  // compact JSON from the driver; empty when detached
  // The user asked to detach and the host side has not finished: the
  // attachment is kept until a detach works (state error, or offline).
  bool detaching = false;
  // The fleet's accelerator request that holds it (its uuid), or empty: set
  // by an attach the request's binder makes, cleared by the detach. Only the
  // request may detach it (cyborgfs/accelerator_requests.h).
  std::string held_by;
  // Out of service (the maintenance file, Cyborg's device disable): its
  // attachment stays, a new attach is refused (kBusy), the fleet never
  // claims it.
  bool maintenance = false;

  // Host side: which cyborgfs driver reports this accelerator (the file
  // `reported_by`; the file `driver` shows the kernel driver) and what it said.
  std::string driver;          // empty for accelerators created by hand
  std::string driver_address;  // the driver's own key, e.g. a PCI address
  std::string driver_device_type;
  std::string driver_acc_type;
  // The rest of what the driver said of the device (DiscoveredDevice::facts).
  HostFacts facts;
  // What the driver keeps about the device between calls (Driver: memory).
  std::string driver_memory = "{}";

  // "What you write is what you read": the bytes last written to each writable
  // file. Unset means the value is rendered canonically.
  std::optional<std::string> name_bytes;
  std::optional<std::string> spec_bytes;
  std::optional<std::string> attach_bytes;

  int64_t generation = 1;  // +1 on every stored change
  // In memory only: +1 on every change the service publishes, the last_error
  // ones included, so two values never share a revision (file mtimes).
  uint64_t revision = 0;
  int64_t created_at = 0;  // unix seconds
  int64_t updated_at = 0;  // unix seconds

  // Why the last rejected request on this accelerator failed. Kept in memory
  // only: it explains the most recent refusal, it is not state.
  std::string last_error;
};

}  // namespace cyborgfs
