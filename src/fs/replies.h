// What the FUSE callbacks share: the replies.
// Internal to src/fs.
#pragma once

#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>

#include <string>

#include "cyborgfs/status.h"
#include "errno_map.h"

namespace cyborgfs::fs {

inline void ReplyErrno(fuse_req_t req, int error) { fuse_reply_err(req, error); }

inline void ReplyStatus(fuse_req_t req, const Status& status) {
  if (!status.ok()) spdlog::debug("request refused: {}", status.message());
  fuse_reply_err(req, ErrnoOf(status));
}

// A name where the tree has nothing, and creates nothing.
inline Status NotHere(const char* what) {
  return Status::AccessDenied(std::string(what) + ": the tree has no such file");
}

}  // namespace cyborgfs::fs
