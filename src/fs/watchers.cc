#include "watchers.h"

#include <signal.h>

#include <cerrno>

namespace cyborgfs::fs {
namespace {

// A tid the daemon cannot see (0: in another pid namespace) counts as alive.
bool Runs(pid_t tid) { return tid <= 0 || kill(tid, 0) == 0 || errno != ESRCH; }

}  // namespace

Watchers::Watchers(Alive alive) : alive_(alive ? alive : Runs) {}

Watchers::~Watchers() {
  for (auto& [key, watch] : watches_) {
    if (watch.handle) fuse_pollhandle_destroy(watch.handle);
  }
}

bool Watchers::Poll(fuse_ino_t ino, pid_t tid, fuse_pollhandle* handle, Clock::time_point now) {
  std::lock_guard lock(mu_);
  Sweep(now, false);
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
  Sweep(Clock::now(), false);
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

size_t Watchers::Size(Clock::time_point now) {
  std::lock_guard lock(mu_);
  Sweep(now, true);
  return watches_.size();
}

void Watchers::Sweep(Clock::time_point now, bool now_or_never) {
  if (!now_or_never && now - swept_ < kSweepEvery) return;
  swept_ = now;
  for (auto it = watches_.begin(); it != watches_.end();) {
    Watch& watch = it->second;
    if ((!watch.handle && now - watch.last_poll > kForgetAfter) || !alive_(it->first.second)) {
      if (watch.handle) fuse_pollhandle_destroy(watch.handle);
      it = watches_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace cyborgfs::fs
