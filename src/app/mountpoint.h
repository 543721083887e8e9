// The folder cyborgfs mounts on, made ready after a crash of its last daemon.
//
// A cyborgfs mount names its database file as its source (fsname), so the mount
// table says which daemon serves it, and that database's lock (Store) says
// whether that daemon still lives. A daemon killed with SIGKILL leaves a dead
// mount (every access fails with ENOTCONN), and sometimes a worse one: if it
// died while telling the kernel to forget a name, its thread waits forever for
// a folder lock held by a request it will never answer, so it never finishes
// dying; it keeps its /dev/fuse descriptor and its database lock, and every
// access to the mount hangs. Aborting the FUSE connection (fusectl) ends both.
#pragma once

#include <string>

#include "cyborgfs/status.h"

namespace cyborgfs::app {

// `path` made absolute with its folders' symbolic links resolved, without
// touching its last component if something is mounted there (a dead mount);
// kNotFound if nothing is there at all.
Result<std::string> AbsoluteMountpoint(const std::string& path);

// When `database` is held by a cyborgfs that is dying but stuck on its own
// mount on `mountpoint`: aborts that mount's FUSE connection and waits (a few
// seconds at most) for the process to finish. Returns true when it did.
bool EndStuckDaemon(const std::string& database, const std::string& mountpoint);

// Makes `mountpoint` ready to mount on. REQUIRES: this process holds its
// database's lock (an open Store), so that two daemons never both clear it.
//  - a plain folder: nothing to do;
//  - a cyborgfs mount whose daemon is gone (no live process but this one
//    holds its database): its connection is aborted, it is lazily unmounted
//    (umount2 MNT_DETACH), that is logged, and what was under it is checked;
//  - a cyborgfs mount whose daemon lives: kBusy, naming its pid;
//  - any other filesystem mounted there: kBusy, left alone (never touched);
//  - missing or not a folder: kNotFound / kInvalid.
Status PrepareMountpoint(const std::string& mountpoint);

}  // namespace cyborgfs::app
