// Names of the lifecycle states, as the status file and the store spell them.
#include "cyborgfs/accelerator.h"

namespace cyborgfs {

const char* StateName(State state) {
  switch (state) {
    case State::kAvailable:
      return "available";
    case State::kAttached:
      return "attached";
    case State::kOffline:
      return "offline";
    case State::kError:
      return "error";
  }
  return "error";
}

std::optional<State> StateFromName(const std::string& name) {
  for (State s : kStates) {
    if (name == StateName(s)) return s;
  }
  return std::nullopt;
}

}  // namespace cyborgfs
