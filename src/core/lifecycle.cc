// The lifecycle's one transition function; cyborgfs/lifecycle.h draws it.
#include "cyborgfs/lifecycle.h"

namespace cyborgfs {
namespace {

Status NotAllowed(const Accelerator& record, Event event) {
  return Status::Invalid(std::string("lifecycle: ") + EventName(event) + " is not allowed in state " +
                         StateName(record.state) + (record.detaching ? " (detaching)" : ""));
}

void Detached(Accelerator& record) {
  record.attachment.clear();
  record.attach_bytes.reset();
  record.attach_handle.clear();
  record.detaching = false;
  record.held_by.clear();
}

}  // namespace

const char* EventName(Event event) {
  switch (event) {
    case Event::kAttach:
      return "attach";
    case Event::kDetach:
      return "detach";
    case Event::kDetachFailed:
      return "detach failed";
    case Event::kReported:
      return "reported";
    case Event::kUnreported:
      return "unreported";
    case Event::kRestoreFailed:
      return "restore failed";
  }
  return "?";
}

Status Transition(Accelerator& record, Event event, const AttachTarget* target, const std::string& handle) {
  const State state = record.state;
  const bool hand_made = record.driver.empty();
  switch (event) {
    case Event::kAttach:
      if (!target || state == State::kOffline) return NotAllowed(record, event);
      if (!record.attachment.empty() && record.attachment != target->ToString()) return NotAllowed(record, event);
      record.attachment = target->ToString();
      record.attach_handle = handle;
      record.detaching = false;
      record.state = State::kAttached;
      return Status::Ok();
    case Event::kDetach:
      Detached(record);
      if (state != State::kOffline) record.state = State::kAvailable;
      return Status::Ok();
    case Event::kDetachFailed:
      if (record.attachment.empty() || hand_made || state == State::kOffline) return NotAllowed(record, event);
      record.detaching = true;
      record.state = State::kError;
      return Status::Ok();
    case Event::kReported:
      if (hand_made) return NotAllowed(record, event);
      if (state != State::kOffline) return Status::Ok();
      record.state = record.attachment.empty() ? State::kAvailable
                     : record.detaching        ? State::kError
                                               : State::kAttached;
      return Status::Ok();
    case Event::kUnreported:
      if (hand_made) return NotAllowed(record, event);
      record.state = State::kOffline;
      return Status::Ok();
    case Event::kRestoreFailed:
      if (record.attachment.empty() || record.detaching || state == State::kOffline || hand_made) {
        return NotAllowed(record, event);
      }
      record.state = State::kError;
      return Status::Ok();
  }
  return NotAllowed(record, event);
}

Status CheckInvariants(const Accelerator& a) {
  auto broken = [&](const char* invariant) {
    return Status::Invalid(std::string("lifecycle invariant broken: ") + invariant + " (accelerator " + a.uuid +
                           ", state " + StateName(a.state) + ", attachment \"" + a.attachment + "\")");
  };
  const bool attached = !a.attachment.empty();
  switch (a.state) {
    case State::kAvailable:
      if (attached || a.detaching) return broken("1: available is detached");
      break;
    case State::kAttached:
      if (!attached || a.detaching) return broken("2: attached has an attachment and is not detaching");
      break;
    case State::kError:
      if (!attached) return broken("3: error keeps the attachment");
      break;
    case State::kOffline:
      if (a.driver.empty()) return broken("4: only a driver's record goes offline");
      if (a.detaching && !attached) return broken("4: detaching keeps the attachment");
      break;
  }
  if (a.driver.empty() && a.state != State::kAvailable && a.state != State::kAttached) {
    return broken("5: a record made by hand is available or attached");
  }
  if (!attached && !a.attach_handle.empty()) return broken("6: no attach_handle without an attachment");
  if (!a.held_by.empty() && a.attachment.rfind("vm ", 0) != 0) {
    return broken("8: an accelerator request holds only an attachment to its VM");
  }
  return Status::Ok();
}

}  // namespace cyborgfs
