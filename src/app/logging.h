// Where the daemon's log and its audit trail go.
//
// The log: stderr in the foreground and for --check (the journal, under
// systemd); once detached, syslog if there is a syslog socket (/dev/log),
// else the file DATABASE.log beside the database (containers and small VMs
// run no syslog daemon: a log sent there would be lost). --log-file FILE
// sends it to FILE instead (also in the foreground, besides stderr). The
// audit trail (cyborgfs/audit.h) goes to the logger named "audit": the same
// places as the log, and also to --audit-log FILE if given. Both files are
// opened for appending and reopened by ApplyLogOptions (on SIGHUP, after
// logrotate moved them).
#pragma once

#include <string>

#include "cyborgfs/status.h"
#include "options.h"

namespace cyborgfs::app {

// Sets up both loggers for `options` and the database at `database` (an
// absolute path). Fails if a log file cannot be opened. On success, where
// the log goes once the daemon runs, in words ("syslog", "/var/lib/...log").
Result<std::string> SetUpLogging(const Options& options, const std::string& database);

// Applies the reloadable parts of `options`: the log level, the log file and
// the audit file (reopened, or opened at a new path, or closed).
Status ApplyLogOptions(const Options& options);

}  // namespace cyborgfs::app
