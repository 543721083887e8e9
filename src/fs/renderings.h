// One rendering per reader of a file that changes by itself.
//
// `drivers`, `stats` and the files of fleet/ change without a write, so the
// kernel is never told: it keeps no attributes of them (timeouts 0) and asks
// for them again before every read(2). A read to the end of file (cat,
// Python's read(), jq) is a loop of read(2) calls: GETATTR, READ (the pages,
// unless the kernel has them), then GETATTR again for the call that finds the
// end. Rendered afresh for each request, a value that grew between the first
// GETATTR and the last would be read as the start of one rendering and the
// end of the next (a JSON document with "extra data").
//
// sysfs keeps one rendering per open file; opens never reach this daemon
// (FUSE_CAP_NO_OPEN_SUPPORT), so a rendering is kept per reading thread
// instead, for the loop that reads it:
// - each rendering is a new value to the kernel: the nanoseconds of its
//   mtime are its serial number, so the kernel drops the pages of any other
//   and READs this one's (unless it is empty);
// - the requests of the thread that asked for it, each less than kIdle after
//   its last one, are answered from it, until it is kAtMost old;
// - once a READ has given its last byte, the next look at the attributes is
//   the end-of-file check of that loop: answered from it (however old), and
//   the rendering is done with; the thread's next request renders anew.
// Another thread gets its own.
//
// So a read(2) loop sees one value whole, unless its calls are more than
// kIdle apart; a thread that reads a file again reads it afresh (an empty
// one, of which nothing is READ: at most kAtMost old).
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "cyborgfs/status.h"

namespace cyborgfs::fs {

class Renderings {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kIdle = std::chrono::milliseconds(10);
  static constexpr auto kAtMost = std::chrono::milliseconds(20);

  struct Rendering {
    std::shared_ptr<const std::string> text;  // shared: accelerators.json's is megabytes
    mode_t mode = 0;                          // type and permission bits
    timespec mtime{};
  };
  using Held = std::shared_ptr<const Rendering>;

  // What the kernel asks of a file: its attributes (LOOKUP, GETATTR,
  // READDIRPLUS) or its bytes (READ).
  enum class Ask { kAttributes, kBytes };

  // What thread `reader` is answered for file `ino` at `now`: the rendering
  // it is reading, or the one `render()` makes (kept for it; an error is not).
  template <typename Render>
  Result<Held> For(fuse_ino_t ino, pid_t reader, Ask ask, Clock::time_point now, Render render) {
    const Key key{ino, reader};
    {
      std::lock_guard lock(mu_);
      Prune(now);
      auto it = kept_.find(key);
      if (it != kept_.end() && now - it->second.used < kIdle) {
        Held held = it->second.held;
        if (it->second.read_to_end && ask == Ask::kAttributes) {  // the loop's end-of-file check
          kept_.erase(it);
          return held;
        }
        if (now - it->second.made < kAtMost) {
          it->second.used = now;
          return held;
        }
      }
    }
    Result<Rendering> made = render();  // without the lock: it may take the view's or the service's
    if (!made.ok()) return made.status();
    std::lock_guard lock(mu_);
    made->mtime.tv_nsec = static_cast<long>(++serial_ % 1000000000);
    Held held = std::make_shared<const Rendering>(std::move(*made));
    kept_[key] = Kept{held, now, now, false};
    order_.emplace_back(now, key);
    return held;
  }

  // `reader` was sent the last byte of `held` (a READ reached its end).
  void ReadToEnd(fuse_ino_t ino, pid_t reader, const Held& held) {
    std::lock_guard lock(mu_);
    auto it = kept_.find(Key{ino, reader});
    if (it != kept_.end() && it->second.held == held) it->second.read_to_end = true;
  }

  // How many renderings are kept (for tests).
  size_t Size() const {
    std::lock_guard lock(mu_);
    return kept_.size();
  }

 private:
  using Key = std::pair<fuse_ino_t, pid_t>;
  struct Kept {
    Held held;
    Clock::time_point made, used;
    bool read_to_end;
  };

  // Forgets the renderings too old to be used again: those made kAtMost +
  // kIdle ago (the last end-of-file check of one is at most kIdle late).
  void Prune(Clock::time_point now) {
    while (!order_.empty() && now - order_.front().first >= kAtMost + kIdle) {
      auto it = kept_.find(order_.front().second);
      if (it != kept_.end() && it->second.made == order_.front().first) kept_.erase(it);
      order_.pop_front();
    }
  }

  mutable std::mutex mu_;
  std::map<Key, Kept> kept_;
  std::deque<std::pair<Clock::time_point, Key>> order_;  // when each was made, oldest first
  uint64_t serial_ = 0;                                  // renderings made
};

}  // namespace cyborgfs::fs
