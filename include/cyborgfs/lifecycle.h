// The accelerator lifecycle: its states, the events that move a record
// between them, and the invariants every stored record keeps.
//
// Invariants (CheckInvariants; Service checks them at every commit in debug
// builds):
//  1. available: detached (no attachment, no attach_handle, not detaching).
//  2. attached: attached (an attachment; the host side was attached to it by
//     the record's driver, or there is none), not detaching.
//  3. error: attached in the record, and the host side disagrees: either a
//     detach the user asked for failed (detaching), or restoring the
//     attachment at a rescan failed (not detaching).
//  4. offline: reported by a driver once (driver != ""), not by any now. The
//     attachment and `detaching` are kept as they were, for when it returns.
//  5. A record made by hand (no driver) has no host side: it is only ever
//     available or attached.
//  6. attach_handle is empty whenever there is no attachment.
//  7. Every state is durable: each transition is one Store commit, made after
//     the driver's step and before the request returns. A crash between the
//     step and the commit leaves the host and the record disagreeing; the
//     next rescan sees it (Driver::Agrees) and makes the host agree.
//  8. held_by (the fleet's accelerator request holding it) is set only with
//     an attachment to a VM; every detach clears it.
//
//                         attach [Service::ApplyAttach]
//        +---------> available ----------------------------> attached <----+
//        |              ^    <----------------------------    |  |         |
//        |              |      detach [Service::Detach]        |  |         |
//        |              |                                     |  |         |
//        |  detach [Service::Detach, retried by Rescan]       |  |         |
//        |              |                  detach fails       |  |  restore fails
//        |              +------ error <-----------------------+  |  [Rescan]
//        |                     (detaching)                       v         |
//        |                                     error (restore failed) -----+
//        |                                       restored, or attached again
//        |                                       [Rescan, Service::ApplyAttach]
//        |
//        |  reported again [Rescan]: available, attached or error(detaching)
//        |  as the record says, then as the host agrees (above)
//     offline <--- unreported [Rescan]: from available, attached and error
//
// The transitions, each with the function that makes it:
//   available -> attached          kAttach        [Service::ApplyAttach]
//   attached  -> available         kDetach        [Service::Detach]
//   attached  -> error(detaching)  kDetachFailed  [Service::Detach]
//   error(detaching) -> available  kDetach        [Service::Detach; Rescan retries it]
//   error(detaching) -> error      kDetachFailed  [Service::Detach, Rescan]
//   error -> attached              kAttach        [Service::ApplyAttach: the target it has,
//                                                  which cancels a pending detach; Rescan:
//                                                  a restore that worked]
//   error(restore) -> available    kDetach        [Service::Detach]
//   attached -> error(restore)     kRestoreFailed [Rescan: the host no longer held it as
//                                                  attached and attaching it again failed]
//   available, attached, error -> offline   kUnreported [Rescan]
//   offline -> available | attached | error(detaching)
//                                  kReported      [Rescan; then the host is made to agree]
//   offline -> offline (detached)  kDetach        [Service::Detach: no host step, the
//                                                  device is gone]
// An attach of an offline record is refused (ENODEV) before any event; so
// is an attach to another target (EBUSY).
#pragma once

#include <string>

#include "cyborgfs/accelerator.h"
#include "cyborgfs/driver.h"
#include "cyborgfs/status.h"

namespace cyborgfs {

enum class Event {
  kAttach,         // the host side is attached to `target` (or the record has no driver)
  kDetach,         // the host side is detached (or there is none to detach)
  kDetachFailed,   // a detach was asked for and the driver failed it
  kReported,       // a driver reports the device again
  kUnreported,     // no driver reports the device any more
  kRestoreFailed,  // the host did not hold the attachment, and attaching it again failed
};

const char* EventName(Event event);

// Moves `record` by `event`: sets its state, attachment, attach_handle and
// detaching flag, and nothing else. kAttach takes the target and the
// driver's attach handle ("" without a driver). kInvalid, and `record`
// unchanged, for an event its state does not allow (the diagram above).
Status Transition(Accelerator& record, Event event, const AttachTarget* target = nullptr,
                  const std::string& handle = {});

// The invariants above; kInvalid naming the first one `record` breaks.
Status CheckInvariants(const Accelerator& record);

}  // namespace cyborgfs
