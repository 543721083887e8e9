// Accelerator requests (ARQs): "an accelerator of this kind for this VM",
// claimed from the whole fleet and bound by the host that has it.
//
// The interface the front ends (REST, files) call; the fleet implements it
// on PostgreSQL (src/fleet/requests.h, docs/fleet.md "Requests"). A request
// is a JSON object:
//   {"uuid", "state", "instance_uuid", "device_type", "wanted_host" (null:
//    any), "match" ({} or key/values every accelerator held must have, in
//    its record or its acc_specs), "count", "host" (the host whose
//    accelerators it holds; null before the claim), "accelerators" ([uuid]),
//    "attach_handles" ([{"accelerator", "attach_handle"}] once bound),
//    "attach_handle" (the first one's, null before), "error", "created_at",
//    "updated_at" (unix seconds)}
//
// The states, and what moves a request between them:
//
//   from          to            by
//   (none)        Initial       Create / an INSERT in SQL
//   Initial       BindStarted   the claim: `count` available accelerators of one host that
//                               is up, each held by this request alone (fleet_claim())
//   Initial       BindFailed    the claim found none ("no accelerator available ...")
//   BindStarted   Bound         the owning host attached every one to the instance
//   BindStarted   BindFailed    the host's attach failed (its driver's words, or a
//                               conflict: the accelerator was attached to someone else
//                               meanwhile), or no host bound it within the bind timeout;
//                               the claims are released and what was attached detached
//   BindStarted,  Deleting      Delete: the owning host is to detach them
//   Bound,
//   UnbindFailed
//   Deleting,     (gone)        the owning host detached every one: claims released
//   UnbindFailed
//   Deleting,     UnbindFailed  the host's detach failed (its words); retried
//   UnbindFailed
//   Initial,      (gone)        Delete: nothing is held
//   BindFailed
//
// Errors: kInvalid (a bad body or filter), kNotFound, kExists (the uuid is
// taken), kUnavailable (PostgreSQL cannot be reached now: nothing changed).
//
// Create and Delete write the audit trail (audit.h) with `who` asked: the
// request made or deleted, or why not (a write of the same body again,
// which changes nothing, writes nothing).
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <optional>
#include <string>

#include "cyborgfs/caller.h"
#include "cyborgfs/status.h"
#include "cyborgfs/values.h"

namespace cyborgfs {

class AcceleratorRequests {
 public:
  virtual ~AcceleratorRequests() = default;
  // What Create does with a uuid that is taken: kExists (REST: a POST makes
  // a new request or fails), or, with kSameIsDone, the request as it is now
  // if it asks what `body` asks (files: writing a value again is a no-op).
  enum class Taken { kExists, kSameIsDone };
  // Records `body` ({"device_type", "instance_uuid"} and optionally "uuid",
  // "host", "match", "count") and claims for it; the request as it is then
  // (BindStarted or BindFailed).
  virtual Result<Json> Create(const Json& body, Taken taken, const Caller& who) = 0;
  virtual Result<Json> Get(const std::string& uuid) = 0;
  // {"arqs": [...]}, of `instance` only if given; oldest first.
  virtual Result<Json> List(const std::optional<std::string>& instance) = 0;
  // Ends the request: gone at once if it holds nothing, Deleting otherwise.
  virtual Status Delete(const std::string& uuid, const Caller& who) = 0;
};

}  // namespace cyborgfs
