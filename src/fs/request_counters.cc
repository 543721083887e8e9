#include "request_counters.h"

namespace cyborgfs::fs {
namespace {

constexpr const char* kNames[] = {"lookup",  "forget",      "getattr",  "setattr", "readlink", "mknod",
                                  "mkdir",   "unlink",      "rmdir",    "symlink", "rename",   "link",
                                  "open",    "read",        "write",    "flush",   "fsync",    "opendir",
                                  "readdir", "readdirplus", "fsyncdir", "create",  "poll"};
static_assert(std::size(kNames) == static_cast<size_t>(Op::kCount), "one name per operation");

}  // namespace

Json RequestCounters::Counts() const {
  Json counts = Json::object();
  for (size_t i = 0; i < counts_.size(); ++i) counts[kNames[i]] = counts_[i].load(std::memory_order_relaxed);
  return counts;
}

}  // namespace cyborgfs::fs
