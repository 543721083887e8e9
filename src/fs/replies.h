// What the FUSE callbacks share: the state of an open file and the replies.
// Internal to src/fs.
#pragma once

#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>
#include <string>

#include "cyborgfs/scratch.h"
#include "cyborgfs/status.h"
#include "errno_map.h"

namespace cyborgfs::fs {

// What an open file keeps: the content served to its reads. A read at offset
// 0 renders the value afresh, later offsets continue that rendering, so a
// reader never gets the halves of two values.
// Nothing may touch an OpenFile after its request was replied to.
struct OpenFile {
  std::mutex mu;
  std::shared_ptr<const std::string> content;  // REQUIRES: mu
  bool writer = false;
  bool append = false;          // O_APPEND: scratch writes land at the end
  ScratchSpace::Entry scratch;  // set when the file is a scratch file
};

inline OpenFile& FileOf(fuse_file_info* fi) { return *reinterpret_cast<OpenFile*>(fi->fh); }

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
