// How many requests of each kind the daemon has answered, for the `stats`
// file: a read of it tells how much work the kernel sends (a request the
// kernel answers from its caches never reaches the daemon).
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "cyborgfs/values.h"

namespace cyborgfs::fs {

enum class Op : size_t {
  kLookup,
  kForget,
  kGetattr,
  kSetattr,
  kReadlink,
  kMknod,
  kMkdir,
  kUnlink,
  kRmdir,
  kSymlink,
  kRename,
  kLink,
  kOpen,
  kRead,
  kWrite,
  kFlush,
  kFsync,
  kOpendir,
  kReaddir,
  kReaddirplus,
  kFsyncdir,
  kCreate,
  kPoll,
  kCount,  // not an operation: the number of them
};

class RequestCounters {
 public:
  void Count(Op op) { counts_[static_cast<size_t>(op)].fetch_add(1, std::memory_order_relaxed); }

  // {"lookup": N, "forget": N, ...}.
  Json Counts() const;

 private:
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Op::kCount)> counts_{};
};

}  // namespace cyborgfs::fs
