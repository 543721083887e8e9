// The FUSE adapter: turns low-level FUSE requests into Service calls.
//
// Each callback unpacks the request, asks the Service, and replies; the rules
// of the tree live in the Service and the attribute table, the errno mapping
// in errno_map.cc. Files are served with direct_io and their exact size, and
// nothing is cached by the kernel (entry and attribute timeouts are 0), so
// every read and stat sees the current value.
//
// Thread safety: the callbacks run on libfuse's worker threads concurrently.
#pragma once

#include <fuse_lowlevel.h>

#include <mutex>
#include <string>
#include <unordered_map>

#include "cyborgfs/service.h"

namespace cyborgfs::fs {

class Filesystem {
 public:
  explicit Filesystem(Service& service);

  // The operation table to pass to fuse_session_new, with `this` as userdata.
  static const fuse_lowlevel_ops& Operations();

  // Called by the callbacks (public so the C callbacks can reach them).
  void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void GetAttr(fuse_req_t req, fuse_ino_t ino);
  void SetAttr(fuse_req_t req, fuse_ino_t ino, const struct stat& attr, int to_set);
  void ReadLink(fuse_req_t req, fuse_ino_t ino);
  void MakeDir(fuse_req_t req, fuse_ino_t parent, const char* name);
  void RemoveDir(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Rename(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi);
  void Write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t offset, fuse_file_info* fi);
  void Flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void ReadDir(fuse_req_t req, size_t size, off_t offset, fuse_file_info* fi);
  void ReleaseDir(fuse_req_t req, fuse_file_info* fi);

 private:
  // The stat of `ino`, or the Status that explains why it has none.
  Result<struct stat> Stat(fuse_ino_t ino) const;
  Result<std::string> Content(fuse_ino_t ino) const;
  void ReplyEntry(fuse_req_t req, fuse_ino_t ino);
  void WriterOpened(fuse_ino_t ino);
  bool LastWriterClosed(fuse_ino_t ino);  // true when no writer is left

  Service& service_;
  const uid_t uid_;
  const gid_t gid_;
  const time_t mounted_at_;

  std::mutex writers_mu_;
  std::unordered_map<fuse_ino_t, int> writers_;  // open-for-write count per file
};

}  // namespace cyborgfs::fs
