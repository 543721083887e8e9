// What the kernel holds of the tree, as far as the adapter needs to know.
//
// Every inode number handed to the kernel in an entry reply (lookup, mkdir,
// mknod, readdirplus) is counted here until the kernel's `forget` brings its
// count back to 0 (the lookup-count contract of fuse_lowlevel.h). With it:
// - the scratch file behind a scratch inode: the kernel may use the number
//   as long as it holds it, after the file was unlinked or renamed too;
// - for a file, a fingerprint (a 64-bit hash) of the content whose size and
//   mtime the kernel was last told in an attribute reply: a change marks stale
//   only the held files whose content now differs from it (Invalidate);
// - for a file, how often its pages were found not to be its value (a write
//   that left the value as it was, or an unfinished document): added to its
//   mtime, so the kernel, which asks for the attributes after every write,
//   sees a new mtime and drops those pages before the next read.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <fuse_lowlevel.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "scratch.h"

namespace cyborgfs::fs {

class KernelInodes {
 public:
  // A content's fingerprint; 0 stands for "none told" (a folder, a link).
  static uint64_t Fingerprint(std::string_view content) { return std::hash<std::string_view>{}(content) | 1; }

  // Counts one more kernel reference to `ino` (an entry reply was sent), with
  // its scratch file if it is one.
  void Remember(fuse_ino_t ino, ScratchSpace::Entry scratch = nullptr) {
    std::lock_guard lock(mu_);
    Held& held = held_[ino];
    if (scratch) held.scratch = std::move(scratch);
    ++held.count;
  }

  void Forget(fuse_ino_t ino, uint64_t count) {
    std::lock_guard lock(mu_);
    auto it = held_.find(ino);
    if (it == held_.end()) return;
    it->second.count = it->second.count > count ? it->second.count - count : 0;
    if (it->second.count == 0) held_.erase(it);
  }

  bool Holds(fuse_ino_t ino) const {
    std::lock_guard lock(mu_);
    return held_.count(ino) != 0;
  }

  // The scratch file behind `ino`, or nullptr if the kernel holds no such one.
  ScratchSpace::Entry Scratch(fuse_ino_t ino) const {
    std::lock_guard lock(mu_);
    auto it = held_.find(ino);
    return it == held_.end() ? nullptr : it->second.scratch;
  }

  // The kernel was just told the attributes of `ino` (a held inode; the
  // root's files are looked up, so every file the kernel reads is held), of
  // a content with fingerprint `told`.
  void Told(fuse_ino_t ino, uint64_t told) {
    std::lock_guard lock(mu_);
    auto it = held_.find(ino);
    if (it != held_.end()) it->second.told = told;
  }

  // The fingerprint of what the kernel was last told `ino` holds; 0 if none.
  uint64_t WhatWasTold(fuse_ino_t ino) const {
    std::lock_guard lock(mu_);
    auto it = held_.find(ino);
    return it == held_.end() ? 0 : it->second.told;
  }

  // The kernel's pages of held file `ino` are not its value: its mtime moves.
  void PagesAreStale(fuse_ino_t ino) {
    std::lock_guard lock(mu_);
    auto it = held_.find(ino);
    if (it != held_.end()) ++it->second.mtime_bumps;
  }

  // What to add to the mtime of `ino` (nanoseconds): PagesAreStale() calls.
  uint64_t MtimeBumps(fuse_ino_t ino) const {
    std::lock_guard lock(mu_);
    auto it = held_.find(ino);
    return it == held_.end() ? 0 : it->second.mtime_bumps;
  }

 private:
  struct Held {
    uint64_t count = 0;
    uint64_t told = 0;
    uint64_t mtime_bumps = 0;
    ScratchSpace::Entry scratch;
  };
  mutable std::mutex mu_;
  std::unordered_map<fuse_ino_t, Held> held_;
};

// The names the kernel was told are absent, in the folders whose names come
// and go (accelerators/, by-name/): the negative entries it may cache. Only
// these need forgetting when such a name appears (a mkdir's own name aside:
// the kernel makes that entry from the reply). At most kMax per folder, each
// for kCacheSeconds at most; beyond that an absent name is not cached.
//
// Thread safety: all methods may be called concurrently.
class NegativeEntries {
 public:
  static constexpr size_t kMax = 65536;
  using Clock = std::chrono::steady_clock;

  explicit NegativeEntries(std::chrono::seconds lifetime) : lifetime_(lifetime) {}

  // Records `name` of `parent` as told absent; false if it may not be
  // cached (the folder has kMax such names already).
  bool Told(fuse_ino_t parent, std::string_view name) {
    std::lock_guard lock(mu_);
    auto& names = folders_[parent];
    if (names.size() >= kMax) Prune(names);
    if (names.size() >= kMax) return false;
    names[std::string(name)] = Clock::now();
    return true;
  }

  // Whether the kernel may hold `name` of `parent` as absent; forgets it.
  bool Take(fuse_ino_t parent, std::string_view name) {
    std::lock_guard lock(mu_);
    auto& names = folders_[parent];
    auto it = names.find(std::string(name));
    if (it == names.end()) return false;
    const bool live = Clock::now() - it->second < lifetime_;
    names.erase(it);
    return live;
  }

 private:
  using Names = std::unordered_map<std::string, Clock::time_point>;
  void Prune(Names& names) {  // REQUIRES: mu_
    const auto now = Clock::now();
    for (auto it = names.begin(); it != names.end();) it = now - it->second >= lifetime_ ? names.erase(it) : ++it;
  }

  const std::chrono::seconds lifetime_;
  std::mutex mu_;
  std::unordered_map<fuse_ino_t, Names> folders_;  // REQUIRES: mu_
};

}  // namespace cyborgfs::fs
