#include "watchers.h"

namespace cyborgfs::fs {

Watchers::~Watchers() {
  for (auto& [key, watch] : watches_) {
    if (watch.handle) fuse_pollhandle_destroy(watch.handle);
  }
}

bool Watchers::Poll(fuse_ino_t ino, pid_t tid, fuse_pollhandle* handle, Clock::time_point now) {
  std::lock_guard lock(mu_);
  Forget(now);
  const uint64_t count = changes_[ino];
  auto [it, first] = watches_.try_emplace({ino, tid});
  Watch& watch = it->second;
  watch.last_poll = now;
  if (watch.handle) fuse_pollhandle_destroy(watch.handle);  // this poll's replaces it
  watch.handle = nullptr;
  const bool changed = !first && watch.told != count;
  watch.told = count;
  if (changed) {
    if (handle) fuse_pollhandle_destroy(handle);  // answered now: nothing to wait for
  } else {
    watch.handle = handle;
  }
  return changed;
}

void Watchers::Changed(fuse_ino_t ino) {
  std::lock_guard lock(mu_);
  ++changes_[ino];
  for (auto it = watches_.lower_bound({ino, 0}); it != watches_.end() && it->first.first == ino; ++it) {
    if (!it->second.handle) continue;
    fuse_lowlevel_notify_poll(it->second.handle);
    fuse_pollhandle_destroy(it->second.handle);
    it->second.handle = nullptr;
  }
}

bool Watchers::Watching(fuse_ino_t ino) const {
  std::lock_guard lock(mu_);
  auto it = watches_.lower_bound({ino, 0});
  return it != watches_.end() && it->first.first == ino;
}

size_t Watchers::Size() const {
  std::lock_guard lock(mu_);
  return watches_.size();
}

void Watchers::Forget(Clock::time_point now) {
  for (auto it = watches_.begin(); it != watches_.end();) {
    if (!it->second.handle && now - it->second.last_poll > kForgetAfter) {
      it = watches_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace cyborgfs::fs
