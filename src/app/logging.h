// Where the daemon's log and its audit trail go.
//
// The log: stderr in the foreground and for --check (the journal, under
// systemd), syslog once detached. The audit trail (see cyborgfs/audit.h) goes to the logger
// named "audit": the same place as the log, and also to --audit-log FILE if
// given, which is opened for appending and reopened by ApplyLogOptions (on
// SIGHUP, after logrotate moved it).
#pragma once

#include "cyborgfs/status.h"
#include "options.h"

namespace cyborgfs::app {

// Sets up both loggers for `options`. Fails if --audit-log cannot be opened.
Status SetUpLogging(const Options& options);

// Applies the reloadable parts of `options`: the log level, and the audit
// file (reopened, or opened at its new path, or closed).
Status ApplyLogOptions(const Options& options);

}  // namespace cyborgfs::app
