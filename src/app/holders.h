// Which processes hold a database open, and whether a mount is still served.
//
// A running cyborgfs holds an exclusive flock on its database (Store). Which
// process holds it is not what /proc/locks says: that names the process that
// took the lock, which is the parent that exited after the fork to the
// background (fuse_daemonize). The lock belongs to an open file, and every
// process with a descriptor of that open file holds it, as its
// /proc/PID/fdinfo/FD tells ("lock: ... FLOCK ... WRITE ... <dev>:<inode>").
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace cyborgfs::app {

// A process that holds the database, and whether it lives: one that has
// begun to die (a zombie whose last thread is stuck in the kernel) holds it
// too, until it has exited entirely.
struct Holder {
  pid_t pid = 0;
  bool alive = false;
};

// A process other than this one that holds the flock of the file at `path`:
// a live one if there is any. nullopt when none does (or there is no file).
std::optional<Holder> DatabaseHolder(const std::string& path);

// True while `pid` is a process that has not begun to die.
bool Alive(pid_t pid);

// What a FUSE mount on `folder` answers when asked (statfs, from a child
// process, so that a mount whose daemon never answers cannot hang us).
enum class MountAnswer { kAnswers, kGone, kSilent };
MountAnswer AskMount(const std::string& folder);

}  // namespace cyborgfs::app
