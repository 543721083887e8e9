// The one place that tells the kernel to drop what it caches.
//
// The kernel keeps entries, attributes and pages of this tree for long
// timeouts (see filesystem.h); whatever changes them tells it here. Nothing is
// ever invalidated inside a request handler: each kind of invalidation has a
// thread of its own, and a handler at most waits for one of them, told apart
// by what the kernel may wait for:
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
//   may hold (the mkdir or rename being handled). Drain() waits for these; only
//   a handler holding no folder lock (a WRITE) may call it, so a name it made
//   or changed is seen once it returns.
// - DropPages(ino): pages a write left in the page cache that are not the
//   value (a normalized value). The kernel takes the pages' locks, which the
//   write holds until its reply is processed. Queued after the reply; nothing
//   waits for it.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <fuse_lowlevel.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace cyborgfs::fs {

class Notifier {
 public:
  Notifier() = default;
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;
  ~Notifier() { Stop(); }

  // Begins notifying `session` (after fuse_daemonize(): it starts threads).
  // Until then there is no kernel cache and every call does nothing.
  void Start(fuse_session* session);
  // Finishes what is queued and stops (before the session is unmounted).
  void Stop();

  void Stale(fuse_ino_t ino);
  void ForgetEntry(fuse_ino_t parent, std::string name);
  void DropPages(fuse_ino_t ino);
  void AwaitStale();  // the attributes marked stale so far are
  void Drain();       // the entries queued so far are forgotten

 private:
  struct Entry {
    fuse_ino_t parent;
    std::string name;
  };
  // A queue served by one thread.
  template <typename Item>
  struct Lane {
    std::deque<Item> items;      // REQUIRES: mu_
    uint64_t queued = 0;         // items ever queued; REQUIRES: mu_
    uint64_t done = 0;           // items ever done; REQUIRES: mu_
    std::condition_variable cv;  // an item queued, or stopping
    std::condition_variable progress;
    std::thread thread;
  };
  template <typename Item, typename Apply>
  void Serve(Lane<Item>& lane, Apply apply);
  template <typename Item>
  void Push(Lane<Item>& lane, Item item);
  // Waits until the items queued on `lane` so far are done.
  template <typename Item>
  void Await(Lane<Item>& lane, const char* what);

  std::mutex mu_;
  fuse_session* session_ = nullptr;  // REQUIRES: mu_ to change
  bool stopping_ = false;            // REQUIRES: mu_
  Lane<fuse_ino_t> attributes_;
  Lane<Entry> entries_;
  Lane<fuse_ino_t> pages_;
};

}  // namespace cyborgfs::fs
