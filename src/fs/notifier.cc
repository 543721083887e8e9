#include "notifier.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>

namespace cyborgfs::fs {
namespace {

// How long a request waits at most for an invalidation: the kernel answers
// in microseconds; a longer wait means something holds a lock for long, and
// the request should not hang on it.
constexpr auto kAttributeWait = std::chrono::seconds(2);
constexpr auto kEntryWait = std::chrono::milliseconds(500);

}  // namespace

void Notifier::Start(fuse_session* session) {
  accelerators_.Start(session);
  by_name_.Start(session);
  std::lock_guard lock(mu_);
  session_ = session;
  stopping_ = false;
  stale_thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    for (;;) {
      stale_cv_.wait(lock, [&] { return stopping_ || !stale_.empty(); });
      if (stale_.empty()) return;  // stopping, and all is done
      const fuse_ino_t ino = stale_.front();
      stale_.pop_front();
      lock.unlock();
      const bool pages = watched_ && watched_(ino);  // a page lock is held only by a READ being answered
      const int result = fuse_lowlevel_notify_inval_inode(session_, ino, pages ? 0 : -1, 0);
      if (result != 0 && result != -ENOENT) spdlog::warn("cache invalidation (attributes) failed: errno {}", -result);
      if (on_stale_) on_stale_(ino);
      lock.lock();
      ++stale_done_;
      stale_progress_.notify_all();
    }
  });
}

void Notifier::Stop() {
  {
    std::lock_guard lock(mu_);
    if (!session_) return;
    stopping_ = true;
  }
  stale_cv_.notify_all();
  if (stale_thread_.joinable()) stale_thread_.join();
  accelerators_.Stop();
  by_name_.Stop();
  std::lock_guard lock(mu_);
  session_ = nullptr;
}

void Notifier::Stale(fuse_ino_t ino) {
  {
    std::lock_guard lock(mu_);
    if (!session_ || stopping_) return;
    stale_.push_back(ino);
    ++stale_queued_;
  }
  stale_cv_.notify_one();
}

void Notifier::ForgetEntry(fuse_ino_t parent, std::string name) { LaneOf(parent).Forget(std::move(name)); }

void Notifier::AwaitStale() {
  std::unique_lock lock(mu_);
  const uint64_t target = stale_queued_;
  if (!stale_progress_.wait_for(lock, kAttributeWait, [&] { return stale_done_ >= target || stopping_; })) {
    spdlog::warn("attribute invalidations still pending after {} s; replying anyway", kAttributeWait.count());
  }
}

void Notifier::Drain() {
  for (EntryLane* lane : {&accelerators_, &by_name_}) {
    if (!lane->Drain(kEntryWait)) {
      spdlog::debug("entry invalidations still pending (a reader holds the folder's lock); replying anyway");
    }
  }
}

bool Notifier::Stuck(fuse_ino_t parent) const {
  return parent == kByNameIno ? by_name_.Stuck() : parent == kAcceleratorsIno && accelerators_.Stuck();
}

uint64_t Notifier::EntriesQueued() const { return accelerators_.Queued() + by_name_.Queued(); }

}  // namespace cyborgfs::fs
