// The audit trail: one line for every change and every refused change.
//
//   audit time=2026-11-25T23:31:33.643Z uid=1000 pid=4242 command="bash"
//         accelerator="8e45a2ea-..." file="spec" old="{}\n" new="{\"num\": 2}\n"
//   audit time=... uid=1000 pid=4243 command="python3" accelerator="8e45a2ea-..."
//         file="attach" error="attach: attached to vm ...; detach it first (echo > attach)"
//
// (one line each). Strings are JSON strings (whatever a user wrote stays on
// its line), values cut at 256 bytes. uid, pid and command name the process
// whose request it was (the Caller; the command is read from /proc/PID/comm
// when the line is written); "uid=- pid=- command=\"cyborgfs\"" is what the
// daemon does of its own (a rescan's changes: going offline, coming back, a
// repair; an adoption), "uid=- pid=- command=\"written back by the kernel\""
// a write the kernel made from a shared mapping's dirty pages (it names no
// process), and "uid=- pid=- command=\"api token\" address=\"...\"" a TCP client
// of the API that showed its token. The lines go to the logger named "audit" when there is
// one (src/app/logging.cc: the daemon's log plus an optional file), else to
// the default logger.
//
// Thread safety: all functions may be called concurrently.
#pragma once

#include <string_view>

#include "cyborgfs/caller.h"
#include "cyborgfs/status.h"

namespace cyborgfs::audit {

// `file` of `accelerator` (its uuid) changed from `before` to `after`, at
// `who`'s request; for mkdir, rmdir, create and a driver's adoption, file
// names that operation and the values are the name the accelerator got or had.
void Changed(const Caller& who, std::string_view accelerator, std::string_view file, std::string_view before,
             std::string_view after);
// A change of `file` of `accelerator` was refused because of `why`; for a
// refused mkdir, accelerator is the name asked for, for a refused create (or
// fleet/requests/create) "".
void Refused(const Caller& who, std::string_view accelerator, std::string_view file, const Status& why);

// The fleet's accelerator request `request` (its uuid) was made (`action`
// "create", `state` its state then) or deleted ("delete", state "Deleting"
// while its host detaches, "" gone at once), at `who`'s request:
//   audit time=... uid=0 pid=77 command="curl" accelerator_request="5f0c..." action="create" new="BindStarted"
void RequestChanged(const Caller& who, std::string_view request, std::string_view action, std::string_view state);
// `action` on `request` ("" if the body named none) was refused because of `why`.
void RequestRefused(const Caller& who, std::string_view request, std::string_view action, const Status& why);

}  // namespace cyborgfs::audit
