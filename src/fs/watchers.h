// poll(2) on a file, as sysfs does it with sysfs_notify: a watcher's poll
// blocks until the file's value changes, then returns POLLPRI | POLLERR;
// the watcher reads the file again from offset 0 and polls again.
//
//     f = open("status"); f.read()
//     p = select.poll(); p.register(f, select.POLLPRI | select.POLLERR)
//     while p.poll(): f.seek(0); value = f.read()
//
// Opens never reach the daemon, so a watcher is a polling thread (the
// request's pid). Each file counts its changes: Changed() is called once
// the kernel was told the value is stale (the Notifier's), so that what a
// woken watcher reads is the new value. For each (file, thread) the count
// it was last told of is kept, set at its first poll (poll once right after
// reading). A poll that finds a newer count is answered POLLPRI | POLLERR
// at once; otherwise the kernel's poll handle is kept and the poll waits
// until Changed() uses it.
//
// A closed watcher costs nothing: no thread, timer or work is ever its. A
// watcher whose thread has ended is forgotten (its handle dropped) at the
// next sweep; one whose thread lives on but closed the file, kForgetAfter
// after its last poll once its handle was used by a change. (The kernel does
// not say when a file is closed: opens never reach the daemon.) Sweeps run
// at most once per kSweepEvery, from Poll() and Changed(), and at every
// Size().
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

namespace cyborgfs::fs {

class Watchers {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kForgetAfter{30};
  static constexpr std::chrono::seconds kSweepEvery{1};
  // Whether thread `tid` still runs (kill(tid, 0) unless told otherwise).
  using Alive = bool (*)(pid_t tid);

  explicit Watchers(Alive alive = nullptr);
  ~Watchers();
  Watchers(const Watchers&) = delete;
  Watchers& operator=(const Watchers&) = delete;

  // A poll of `ino` by thread `tid`; `handle` (null if the kernel does not
  // wait) is the Watchers' from now on. Whether the file changed since the
  // thread was last told of it.
  bool Poll(fuse_ino_t ino, pid_t tid, fuse_pollhandle* handle, Clock::time_point now);
  // The value of `ino` changed and the kernel knows it: its waiters poll again.
  void Changed(fuse_ino_t ino);
  // Whether a thread polls `ino`.
  bool Watching(fuse_ino_t ino) const;
  // How many (file, thread) pairs are kept (the stats file's "watchers"),
  // after a sweep.
  size_t Size(Clock::time_point now = Clock::now());

 private:
  struct Watch {
    uint64_t told = 0;
    fuse_pollhandle* handle = nullptr;  // owned; null: not waiting
    Clock::time_point last_poll;
  };
  void Sweep(Clock::time_point now, bool now_or_never);  // REQUIRES: mu_

  const Alive alive_;
  mutable std::mutex mu_;
  Clock::time_point swept_;                                // REQUIRES: mu_
  std::map<fuse_ino_t, uint64_t> changes_;                 // REQUIRES: mu_; Changed() calls per file
  std::map<std::pair<fuse_ino_t, pid_t>, Watch> watches_;  // REQUIRES: mu_
};

}  // namespace cyborgfs::fs
