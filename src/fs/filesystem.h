// The FUSE adapter: turns low-level FUSE requests into Service and
// ScratchSpace calls.
//
// Each callback unpacks the request, asks the core, and replies; the rules of
// the tree live in the Service, the attribute table and the ScratchSpace, the
// errno mapping in errno_map.cc. Files are served with direct_io and their
// exact size, and nothing is cached by the kernel (entry and attribute
// timeouts are 0), so every read and stat sees the current value.
//
// In an accelerator folder, a name that is not a listed file is a scratch
// file (see scratch.h); rename(2) of a scratch file over a listed file
// commits its content through Service::Replace. The callbacks of the tree
// are in filesystem.cc, those only scratch files have in scratch_files.cc.
//
// Thread safety: the callbacks run on libfuse's worker threads concurrently.
#pragma once

#include <fuse_lowlevel.h>

#include <mutex>
#include <string>
#include <unordered_map>

#include "cyborgfs/scratch.h"
#include "cyborgfs/service.h"
#include "request_counters.h"
#include "scratch_inodes.h"

namespace cyborgfs::fs {

class Filesystem {
 public:
  explicit Filesystem(Service& service);

  // The operation table to pass to fuse_session_new, with `this` as userdata.
  static const fuse_lowlevel_ops& Operations();

  // Called by the callbacks (public so the C callbacks can reach them).
  void Count(Op op) { counters_.Count(op); }
  void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void GetAttr(fuse_req_t req, fuse_ino_t ino);
  void SetAttr(fuse_req_t req, fuse_ino_t ino, const struct stat& attr, int to_set);
  void Forget(fuse_ino_t ino, uint64_t count);
  void ReadLink(fuse_req_t req, fuse_ino_t ino);
  void MakeDir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  void MakeNode(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  void RemoveDir(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent, const char* new_name,
              unsigned flags);
  void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi);
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
  struct stat ScratchStat(fuse_ino_t ino, const ScratchFile& file) const;
  Result<std::string> Content(fuse_ino_t ino) const;
  void ReplyEntry(fuse_req_t req, fuse_ino_t ino);
  void ReplyScratchEntry(fuse_req_t req, const ScratchSpace::Entry& entry);
  // A listed name: a fixed folder or file, an accelerator, a link, a file of
  // an accelerator folder. These can be neither removed nor renamed.
  bool Listed(const Node& parent, const char* name) const;
  // A new scratch file or folder `name` in folder `parent`, owned by the caller.
  Result<ScratchSpace::Entry> MakeScratch(fuse_req_t req, fuse_ino_t parent, const char* name, bool is_folder,
                                          mode_t mode);
  Status CommitScratch(const Node& from, const char* name, const Node& to, const char* new_name, unsigned flags);
  void SetScratchAttr(fuse_req_t req, fuse_ino_t ino, const struct stat& attr, int to_set);
  void WriterOpened(fuse_ino_t ino);
  bool LastWriterClosed(fuse_ino_t ino);  // true when no writer is left

  Service& service_;
  ScratchSpace scratch_;
  ScratchInodes scratch_inodes_;
  RequestCounters counters_;
  const uid_t uid_;
  const gid_t gid_;
  const time_t mounted_at_;

  std::mutex writers_mu_;
  std::unordered_map<fuse_ino_t, int> writers_;  // open-for-write count per file
};

}  // namespace cyborgfs::fs
