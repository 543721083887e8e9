// The one place that tells the kernel to drop what it caches.
//
// The kernel keeps entries, attributes and pages of this tree for long
// timeouts (see filesystem.h); whatever changes them tells it here. Nothing is
// ever invalidated inside a request handler, and each kind has a worker of
// its own, told apart by what the kernel may wait for:
//
// - Stale(ino): the inode's attributes are marked stale
//   (fuse_lowlevel_notify_inval_inode with a negative offset: the kernel's
//   fuse_reverse_inval_inode then bumps the attribute version under the
//   inode's spinlock and takes no lock a request could hold). It never waits,
//   so a handler may wait for it: AwaitStale() before the reply that
//   acknowledges a change, so the next stat or read asks the daemon again,
//   sees a new mtime, and the kernel drops the stale pages itself
//   (AUTO_INVAL_DATA).
// - ForgetEntry(parent, name): a name that appeared, went, or points
//   elsewhere. The kernel takes the folder's lock, which a request in flight
//   may hold (the mkdir or rename being handled) and which any reader can
//   hold for as long as it likes: each folder has an EntryLane, a helper
//   process that may get stuck without holding up anything else. Drain()
//   waits a little for the lanes that are not stuck; only a handler holding
//   no folder lock (a WRITE) may call it, so a name it made or changed is
//   seen once it returns.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <fuse_lowlevel.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "entry_lane.h"
#include "nodes.h"

namespace cyborgfs::fs {

class Notifier {
 public:
  Notifier() = default;
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;
  ~Notifier() { Stop(); }

  // Begins notifying `session` (after fuse_daemonize(): it starts threads
  // and the lanes' helpers). Until then there is no kernel cache and every
  // call does nothing.
  void Start(fuse_session* session);
  // Finishes what is queued, waiting a bounded time for stuck lanes, and
  // stops (before the session is unmounted).
  void Stop();

  void Stale(fuse_ino_t ino);
  // Set before Start(): `watched` says whether someone polls an inode (its
  // pages are then dropped too, so that a woken watcher reads the new value
  // and size), `done` is called with each inode once it is marked stale.
  void OnStale(std::function<bool(fuse_ino_t)> watched, std::function<void(fuse_ino_t)> done) {
    watched_ = std::move(watched);
    on_stale_ = std::move(done);
  }
  // REQUIRES: parent is kAcceleratorsIno or kByNameIno.
  void ForgetEntry(fuse_ino_t parent, std::string name);
  void AwaitStale();  // the attributes marked stale so far are
  void Drain();       // the entries queued so far are forgotten, on lanes not stuck
  // A notification for names in `parent` has been waiting for its lock.
  bool Stuck(fuse_ino_t parent) const;
  uint64_t EntriesQueued() const;  // ever, on all lanes

 private:
  EntryLane& LaneOf(fuse_ino_t parent) { return parent == kByNameIno ? by_name_ : accelerators_; }

  std::mutex mu_;
  fuse_session* session_ = nullptr;   // REQUIRES: mu_ to change
  bool stopping_ = false;             // REQUIRES: mu_
  std::deque<fuse_ino_t> stale_;      // REQUIRES: mu_
  uint64_t stale_queued_ = 0;         // REQUIRES: mu_; ever queued
  uint64_t stale_done_ = 0;           // REQUIRES: mu_; ever done
  std::condition_variable stale_cv_;  // queued, or stopping
  std::condition_variable stale_progress_;
  std::thread stale_thread_;
  std::function<bool(fuse_ino_t)> watched_;   // set before Start()
  std::function<void(fuse_ino_t)> on_stale_;  // set before Start()
  EntryLane accelerators_{kAcceleratorsIno};
  EntryLane by_name_{kByNameIno};
};

}  // namespace cyborgfs::fs
