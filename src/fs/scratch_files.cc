// The scratch files of accelerator folders: making them, their attributes,
// and committing one over a listed file. See scratch.h for the rules.
#include <sys/stat.h>

#include <cstring>
#include <ctime>

#include "filesystem.h"
#include "nodes.h"
#include "replies.h"

namespace cyborgfs::fs {

void Filesystem::ReplyScratchEntry(fuse_req_t req, const ScratchSpace::Entry& entry) {
  fuse_entry_param reply{};
  reply.ino = scratch_inodes_.Remember(entry);
  reply.attr = ScratchStat(reply.ino, *entry);
  if (fuse_reply_entry(req, &reply) != 0) scratch_inodes_.Forget(reply.ino, 1);
}

struct stat Filesystem::ScratchStat(fuse_ino_t ino, const ScratchFile& file) const {
  const ScratchMeta meta = file.meta();
  struct stat st {};
  st.st_ino = ino;
  st.st_mode = (file.is_folder() ? S_IFDIR : S_IFREG) | meta.mode;
  st.st_nlink = file.linked() ? (file.is_folder() ? 2 : 1) : 0;
  st.st_uid = meta.uid;
  st.st_gid = meta.gid;
  st.st_size = static_cast<off_t>(file.size());
  st.st_atim = meta.atime;
  st.st_mtim = meta.mtime;
  st.st_ctim = meta.ctime;
  return st;
}

void Filesystem::SetScratchAttr(fuse_req_t req, fuse_ino_t ino, const struct stat& attr, int to_set) {
  auto entry = scratch_inodes_.Find(ino);
  if (!entry) return ReplyErrno(req, ENOENT);
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (entry->is_folder()) return ReplyErrno(req, EISDIR);
    if (Status s = entry->Truncate(static_cast<uint64_t>(attr.st_size)); !s.ok()) return ReplyStatus(req, s);
  }
  if (to_set & FUSE_SET_ATTR_MODE) entry->SetMode(attr.st_mode);
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    entry->SetOwner(to_set & FUSE_SET_ATTR_UID ? attr.st_uid : static_cast<uid_t>(-1),
                    to_set & FUSE_SET_ATTR_GID ? attr.st_gid : static_cast<gid_t>(-1));
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    auto pick = [&](int set, int set_now, const timespec& given) -> const timespec* {
      if (!(to_set & set)) return nullptr;
      return (to_set & set_now) ? &now : &given;
    };
    entry->SetTimes(pick(FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW, attr.st_atim),
                    pick(FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW, attr.st_mtim));
  }
  const struct stat st = ScratchStat(ino, *entry);
  fuse_reply_attr(req, &st, 0);
}

void Filesystem::MakeNode(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  if (!S_ISREG(mode) && Decode(parent).kind == NodeKind::kAcceleratorDir) {
    return ReplyStatus(req, Status::NotPermitted("mknod: only regular scratch files can be made"));
  }
  auto made = MakeScratch(req, parent, name, false, mode);
  made.ok() ? ReplyScratchEntry(req, *made) : ReplyStatus(req, made.status());
}

void Filesystem::Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  auto made = MakeScratch(req, parent, name, false, mode);
  if (!made.ok()) return ReplyStatus(req, made.status());
  auto file = std::make_unique<OpenFile>();
  file->scratch = *made;
  file->append = fi->flags & O_APPEND;
  fuse_entry_param entry{};
  entry.ino = scratch_inodes_.Remember(*made);
  entry.attr = ScratchStat(entry.ino, **made);
  fi->fh = reinterpret_cast<uint64_t>(file.get());
  fi->direct_io = 1;
  if (fuse_reply_create(req, &entry, fi) != 0) return scratch_inodes_.Forget(entry.ino, 1);
  file.release();  // owned by the kernel's open file until `release`
}

Result<ScratchSpace::Entry> Filesystem::MakeScratch(fuse_req_t req, fuse_ino_t parent, const char* name, bool is_folder,
                                                    mode_t mode) {
  const Node node = Decode(parent);
  if (node.kind != NodeKind::kAcceleratorDir) {
    return NotHere(is_folder ? "mkdir" : "create")
        .Prefixed(std::string(name) +
                  " (scratch files live in "
                  "accelerator folders only)");
  }
  if (!service_.FindById(node.id)) return Status::NotFound("no such accelerator");
  if (FindAttribute(name)) return Status::Exists(std::string(name) + " is a listed file");
  const fuse_ctx* caller = fuse_req_ctx(req);
  ScratchMeta meta;
  meta.mode = mode & 07777;
  meta.uid = caller->uid;
  meta.gid = caller->gid;
  auto made = scratch_.Create(node.id, name, is_folder, meta);
  if (!made.ok()) spdlog::warn("scratch {}: refused: {}", name, made.status().message());
  return made;
}

Status Filesystem::CommitScratch(const Node& from, const char* name, const Node& to, const char* new_name,
                                 unsigned flags) {
  if (flags & RENAME_NOREPLACE) return Status::Exists(std::string(new_name) + " exists");
  const Attr attr = FindAttribute(new_name)->attr;
  return scratch_.Commit(from.id, name,
                         [&](const std::string& content) { return service_.Replace(to.id, attr, content, name); });
}

}  // namespace cyborgfs::fs
