// The inode numbers of scratch files that the kernel holds.
//
// A scratch file's inode number is kScratchBase + its ScratchFile::number().
// The kernel may use it (getattr, open) as long as it holds the inode: after
// the file was unlinked or renamed over a listed file too. So each number
// the adapter hands out in an entry reply is counted here with its file, and
// forgotten when the kernel's `forget` brings the count back to 0 (the
// lookup-count contract of fuse_lowlevel.h).
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <fuse_lowlevel.h>

#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "cyborgfs/scratch.h"
#include "nodes.h"

namespace cyborgfs::fs {

class ScratchInodes {
 public:
  // Counts one more kernel reference to `entry`; returns its inode number.
  fuse_ino_t Remember(const ScratchSpace::Entry& entry) {
    const fuse_ino_t ino = ScratchIno(entry->number());
    std::lock_guard lock(mu_);
    Held& held = held_[ino];
    held.entry = entry;
    ++held.count;
    return ino;
  }

  // The file behind `ino`, or nullptr if the kernel holds no such inode.
  ScratchSpace::Entry Find(fuse_ino_t ino) const {
    std::lock_guard lock(mu_);
    auto it = held_.find(ino);
    return it == held_.end() ? nullptr : it->second.entry;
  }

  void Forget(fuse_ino_t ino, uint64_t count) {
    std::lock_guard lock(mu_);
    auto it = held_.find(ino);
    if (it == held_.end()) return;
    it->second.count = it->second.count > count ? it->second.count - count : 0;
    if (it->second.count == 0) held_.erase(it);
  }

 private:
  struct Held {
    ScratchSpace::Entry entry;
    uint64_t count = 0;
  };
  mutable std::mutex mu_;
  std::unordered_map<fuse_ino_t, Held> held_;
};

}  // namespace cyborgfs::fs
