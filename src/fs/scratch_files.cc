// The scratch files of accelerator folders: making them, their attributes,
// and committing one over a listed file. See scratch.h for the rules.
#include <sys/stat.h>

#include <cstring>
#include <ctime>

#include "filesystem.h"
#include "fleet_tree.h"
#include "nodes.h"
#include "replies.h"

namespace cyborgfs::fs {

void Filesystem::ReplyScratchEntry(fuse_req_t req, const ScratchSpace::Entry& entry) {
  const fuse_ino_t ino = ScratchIno(entry->number());
  fuse_entry_param reply{};
  if (Status made = MakeEntry(req, ino, reply, entry); !made.ok()) return ReplyStatus(req, made);
  if (fuse_reply_entry(req, &reply) != 0) kernel_.Forget(ino, 1);
}

// Not cached (timeout 0): the kernel asks each time, as a rename over a listed
// file must be seen at once.
Filesystem::Described Filesystem::DescribeScratch(fuse_ino_t ino, const ScratchFile& file) const {
  const ScratchMeta meta = file.meta();
  Described d;
  d.timeout = 0;
  struct stat& st = d.st;
  st.st_ino = ino;
  st.st_mode = (file.is_folder() ? S_IFDIR : S_IFREG) | meta.mode;
  st.st_nlink = file.linked() ? (file.is_folder() ? 2 : 1) : 0;
  st.st_uid = meta.uid;
  st.st_gid = meta.gid;
  st.st_size = static_cast<off_t>(file.size());
  st.st_atim = meta.atime;
  st.st_mtim = meta.mtime;
  st.st_ctim = meta.ctime;
  return d;
}

void Filesystem::SetScratchAttr(fuse_req_t req, fuse_ino_t ino, const struct stat& attr, int to_set) {
  auto entry = kernel_.Scratch(ino);
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
  const Described described = DescribeScratch(ino, *entry);
  fuse_reply_attr(req, &described.st, described.timeout);
}

void Filesystem::MakeNode(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  if (!S_ISREG(mode) && Decode(parent).kind == NodeKind::kAcceleratorDir) {
    return ReplyStatus(req, Status::NotPermitted("mknod: only regular scratch files can be made"));
  }
  auto made = MakeScratch(req, parent, name, false, mode);
  made.ok() ? ReplyScratchEntry(req, *made) : ReplyStatus(req, made.status());
}

Result<ScratchSpace::Entry> Filesystem::MakeScratch(fuse_req_t req, fuse_ino_t parent, const char* name, bool is_folder,
                                                    mode_t mode) {
  const Node node = Decode(parent);
  if (IsFleet(node.kind)) return fleet_tree::ReadOnly(is_folder ? "mkdir" : "create");
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
                                 unsigned flags, const Caller& caller) {
  if (flags & RENAME_NOREPLACE) return Status::Exists(std::string(new_name) + " exists");
  const Attr attr = FindAttribute(new_name)->attr;
  return scratch_.Commit(from.id, name, [&](const std::string& content) {
    auto replaced = writes_.Replace(to.id, attr, content, name, caller);
    if (replaced.ok()) Invalidate(replaced->before, replaced->after);
    return replaced.status();
  });
}

}  // namespace cyborgfs::fs
