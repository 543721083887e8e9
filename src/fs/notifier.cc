#include "notifier.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>

namespace cyborgfs::fs {
namespace {

// How long a wait lasts at most: the kernel answers in microseconds; a
// longer wait means a folder lock is held for long, and the request should
// not hang on it.
constexpr auto kWaitLimit = std::chrono::seconds(2);

void LogFailure(const char* what, int result) {
  // ENOENT: the kernel holds nothing by that number or name; nothing to drop.
  if (result != 0 && result != -ENOENT) spdlog::warn("cache invalidation ({}) failed: errno {}", what, -result);
}

}  // namespace

void Notifier::Start(fuse_session* session) {
  std::lock_guard lock(mu_);
  session_ = session;
  stopping_ = false;
  attributes_.thread = std::thread([this] {
    Serve(attributes_,
          [this](fuse_ino_t ino) { LogFailure("attributes", fuse_lowlevel_notify_inval_inode(session_, ino, -1, 0)); });
  });
  entries_.thread = std::thread([this] {
    Serve(entries_, [this](const Entry& e) {
      LogFailure("entry", fuse_lowlevel_notify_inval_entry(session_, e.parent, e.name.data(), e.name.size()));
    });
  });
  pages_.thread = std::thread([this] {
    Serve(pages_,
          [this](fuse_ino_t ino) { LogFailure("pages", fuse_lowlevel_notify_inval_inode(session_, ino, 0, 0)); });
  });
}

void Notifier::Stop() {
  {
    std::lock_guard lock(mu_);
    if (!session_) return;
    stopping_ = true;
  }
  attributes_.cv.notify_all();
  entries_.cv.notify_all();
  pages_.cv.notify_all();
  if (attributes_.thread.joinable()) attributes_.thread.join();
  if (entries_.thread.joinable()) entries_.thread.join();
  if (pages_.thread.joinable()) pages_.thread.join();
  std::lock_guard lock(mu_);
  session_ = nullptr;
}

template <typename Item, typename Apply>
void Notifier::Serve(Lane<Item>& lane, Apply apply) {
  std::unique_lock lock(mu_);
  for (;;) {
    lane.cv.wait(lock, [&] { return stopping_ || !lane.items.empty(); });
    if (lane.items.empty()) return;  // stopping, and all is done
    Item item = std::move(lane.items.front());
    lane.items.pop_front();
    lock.unlock();  // the kernel may wait: hold nothing of ours
    apply(item);
    lock.lock();
    ++lane.done;
    lane.progress.notify_all();
  }
}

template <typename Item>
void Notifier::Push(Lane<Item>& lane, Item item) {
  {
    std::lock_guard lock(mu_);
    if (!session_ || stopping_) return;
    lane.items.push_back(std::move(item));
    ++lane.queued;
  }
  lane.cv.notify_one();
}

void Notifier::Stale(fuse_ino_t ino) { Push(attributes_, ino); }

void Notifier::ForgetEntry(fuse_ino_t parent, std::string name) { Push(entries_, Entry{parent, std::move(name)}); }

void Notifier::DropPages(fuse_ino_t ino) { Push(pages_, ino); }

template <typename Item>
void Notifier::Await(Lane<Item>& lane, const char* what) {
  std::unique_lock lock(mu_);
  const uint64_t target = lane.queued;
  if (!lane.progress.wait_for(lock, kWaitLimit, [&] { return lane.done >= target || stopping_; })) {
    spdlog::warn("{} invalidations still pending after {} s; replying anyway", what, kWaitLimit.count());
  }
}

void Notifier::AwaitStale() { Await(attributes_, "attribute"); }

void Notifier::Drain() { Await(entries_, "entry"); }

}  // namespace cyborgfs::fs
