#include "filesystem.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include "errno_map.h"
#include "nodes.h"

namespace cyborgfs::fs {
namespace {

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

struct DirEntry {
  std::string name;
  fuse_ino_t ino;
  mode_t type;
};
using DirListing = std::vector<DirEntry>;

Filesystem& Self(fuse_req_t req) { return *static_cast<Filesystem*>(fuse_req_userdata(req)); }
OpenFile& FileOf(fuse_file_info* fi) { return *reinterpret_cast<OpenFile*>(fi->fh); }

void ReplyErrno(fuse_req_t req, int error) { fuse_reply_err(req, error); }

void ReplyStatus(fuse_req_t req, const Status& status) {
  if (!status.ok()) spdlog::debug("request refused: {}", status.message());
  fuse_reply_err(req, ErrnoOf(status));
}

bool WantsWrite(const fuse_file_info* fi) { return (fi->flags & O_ACCMODE) != O_RDONLY; }
bool WantsRead(const fuse_file_info* fi) { return (fi->flags & O_ACCMODE) != O_WRONLY; }

Status NotHere(const char* what) { return Status::AccessDenied(std::string(what) + ": the tree has no such file"); }

// Runs one request's handler. An exception must not cross into libfuse's C
// code: it is logged and the request fails with EIO; the daemon stays up.
template <typename Handler>
void Guarded(fuse_req_t req, Handler&& handler) {
  try {
    handler();
  } catch (const std::exception& e) {
    spdlog::error("internal error, request failed with EIO: {}", e.what());
    fuse_reply_err(req, EIO);
  }
}

// The C callbacks: each hands the request to the Filesystem in its userdata.
const fuse_lowlevel_ops kOperations = [] {
  fuse_lowlevel_ops ops{};
  ops.lookup = [](fuse_req_t r, fuse_ino_t p, const char* n) { Guarded(r, [&] { Self(r).Lookup(r, p, n); }); };
  ops.getattr = [](fuse_req_t r, fuse_ino_t i, fuse_file_info*) { Guarded(r, [&] { Self(r).GetAttr(r, i); }); };
  ops.setattr = [](fuse_req_t r, fuse_ino_t i, struct stat* a, int s, fuse_file_info*) {
    Guarded(r, [&] { Self(r).SetAttr(r, i, *a, s); });
  };
  ops.forget = [](fuse_req_t r, fuse_ino_t i, uint64_t n) {
    Self(r).Forget(i, n);
    fuse_reply_none(r);
  };
  ops.forget_multi = [](fuse_req_t r, size_t count, fuse_forget_data* forgets) {
    for (size_t k = 0; k < count; ++k) Self(r).Forget(forgets[k].ino, forgets[k].nlookup);
    fuse_reply_none(r);
  };
  ops.readlink = [](fuse_req_t r, fuse_ino_t i) { Guarded(r, [&] { Self(r).ReadLink(r, i); }); };
  ops.mkdir = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m) {
    Guarded(r, [&] { Self(r).MakeDir(r, p, n, m); });
  };
  ops.rmdir = [](fuse_req_t r, fuse_ino_t p, const char* n) { Guarded(r, [&] { Self(r).RemoveDir(r, p, n); }); };
  ops.unlink = [](fuse_req_t r, fuse_ino_t p, const char* n) { Guarded(r, [&] { Self(r).Unlink(r, p, n); }); };
  ops.rename = [](fuse_req_t r, fuse_ino_t p, const char* n, fuse_ino_t np, const char* nn, unsigned f) {
    Guarded(r, [&] { Self(r).Rename(r, p, n, np, nn, f); });
  };
  ops.mknod = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, dev_t) {
    Guarded(r, [&] { Self(r).MakeNode(r, p, n, m); });
  };
  ops.create = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, fuse_file_info* fi) {
    Guarded(r, [&] { Self(r).Create(r, p, n, m, fi); });
  };
  ops.symlink = [](fuse_req_t r, const char*, fuse_ino_t, const char*) { ReplyStatus(r, NotHere("symlink")); };
  ops.link = [](fuse_req_t r, fuse_ino_t, fuse_ino_t, const char*) {
    ReplyStatus(r, Status::NotPermitted("link: listed files cannot be linked"));
  };
  ops.open = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) { Guarded(r, [&] { Self(r).Open(r, i, fi); }); };
  ops.read = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t o, fuse_file_info* fi) {
    Guarded(r, [&] { Self(r).Read(r, i, s, o, fi); });
  };
  ops.write = [](fuse_req_t r, fuse_ino_t i, const char* b, size_t s, off_t o, fuse_file_info* fi) {
    Guarded(r, [&] { Self(r).Write(r, i, b, s, o, fi); });
  };
  ops.flush = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) { Guarded(r, [&] { Self(r).Flush(r, i, fi); }); };
  ops.release = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) { Guarded(r, [&] { Self(r).Release(r, i, fi); }); };
  ops.fsync = [](fuse_req_t r, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(r, 0); };  // writes are durable
  ops.opendir = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) { Guarded(r, [&] { Self(r).OpenDir(r, i, fi); }); };
  ops.readdir = [](fuse_req_t r, fuse_ino_t, size_t s, off_t o, fuse_file_info* fi) {
    Guarded(r, [&] { Self(r).ReadDir(r, s, o, fi); });
  };
  ops.releasedir = [](fuse_req_t r, fuse_ino_t, fuse_file_info* fi) { Guarded(r, [&] { Self(r).ReleaseDir(r, fi); }); };
  ops.fsyncdir = [](fuse_req_t r, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(r, 0); };
  ops.init = [](void*, fuse_conn_info* conn) {
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;  // errors must reach write(2)
    conn->want |= conn->capable & FUSE_CAP_ATOMIC_O_TRUNC;
  };
  return ops;
}();

}  // namespace

Filesystem::Filesystem(Service& service)
    : service_(service), uid_(geteuid()), gid_(getegid()), mounted_at_(std::time(nullptr)) {}

const fuse_lowlevel_ops& Filesystem::Operations() { return kOperations; }

// --- names -------------------------------------------------------------------

void Filesystem::ReplyEntry(fuse_req_t req, fuse_ino_t ino) {
  auto attr = Stat(ino);
  if (!attr.ok()) return ReplyStatus(req, attr.status());
  fuse_entry_param entry{};
  entry.ino = ino;
  entry.attr = *attr;
  fuse_reply_entry(req, &entry);
}

void Filesystem::Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  const Node node = Decode(parent);
  const std::string_view n(name);
  fuse_ino_t found = 0;
  if (node.kind == NodeKind::kRoot) {
    found = n == "accelerators" ? kAcceleratorsIno : n == "by-name" ? kByNameIno : n == "create" ? kCreateIno : 0;
  } else if (node.kind == NodeKind::kAccelerators) {
    if (auto a = service_.FindByUuid(n)) found = DirIno(a->id);
  } else if (node.kind == NodeKind::kByName) {
    if (auto a = service_.FindByName(n)) found = LinkIno(a->id);
  } else if (node.kind == NodeKind::kAcceleratorDir && service_.FindById(node.id)) {
    if (const AttrInfo* info = FindAttribute(n)) {
      found = AttrIno(node.id, info->attr);
    } else if (auto entry = scratch_.Find(node.id, n)) {
      return ReplyScratchEntry(req, entry);
    }
  }
  if (found == 0) return ReplyErrno(req, ENOENT);
  ReplyEntry(req, found);
}

void Filesystem::ReplyScratchEntry(fuse_req_t req, const ScratchSpace::Entry& entry) {
  fuse_entry_param reply{};
  reply.ino = scratch_inodes_.Remember(entry);
  reply.attr = ScratchStat(reply.ino, *entry);
  if (fuse_reply_entry(req, &reply) != 0) scratch_inodes_.Forget(reply.ino, 1);
}

void Filesystem::Forget(fuse_ino_t ino, uint64_t count) {
  if (Decode(ino).kind == NodeKind::kScratch) scratch_inodes_.Forget(ino, count);
}

// --- attributes --------------------------------------------------------------

Result<std::string> Filesystem::Content(fuse_ino_t ino) const {
  const Node node = Decode(ino);
  if (node.kind == NodeKind::kCreate) return std::string();
  auto a = service_.FindById(node.id);
  if (!a) return Status::NotFound("no such accelerator");
  if (node.kind == NodeKind::kLink) return "../accelerators/" + a->uuid;
  return AttributeInfo(node.attr).render(*a);
}

Result<struct stat> Filesystem::Stat(fuse_ino_t ino) const {
  struct stat st {};
  st.st_ino = ino;
  st.st_uid = uid_;
  st.st_gid = gid_;
  st.st_nlink = 1;
  st.st_atime = st.st_mtime = st.st_ctime = mounted_at_;
  const Node node = Decode(ino);
  switch (node.kind) {
    case NodeKind::kRoot:
    case NodeKind::kAccelerators:
      st.st_mode = S_IFDIR | 0755;
      st.st_nlink = 2;
      return st;
    case NodeKind::kByName:
      st.st_mode = S_IFDIR | 0555;
      st.st_nlink = 2;
      return st;
    case NodeKind::kCreate:
      st.st_mode = S_IFREG | 0200;
      return st;
    case NodeKind::kScratch:
      if (auto entry = scratch_inodes_.Find(ino)) return ScratchStat(ino, *entry);
      return Status::NotFound("no such scratch file");
    case NodeKind::kUnknown:
      return Status::NotFound("no such file");
    default:
      break;
  }
  auto a = service_.FindById(node.id);
  if (!a) return Status::NotFound("no such accelerator");
  st.st_mtime = st.st_ctime = a->updated_at;
  if (node.kind == NodeKind::kAcceleratorDir) {
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
    return st;
  }
  auto content = Content(ino);
  if (!content.ok()) return content.status();
  st.st_size = static_cast<off_t>(content->size());
  st.st_mode = node.kind == NodeKind::kLink ? S_IFLNK | 0777 : S_IFREG | AttributeInfo(node.attr).mode;
  return st;
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

void Filesystem::GetAttr(fuse_req_t req, fuse_ino_t ino) {
  auto st = Stat(ino);
  if (!st.ok()) return ReplyStatus(req, st.status());
  fuse_reply_attr(req, &*st, 0);
}

// On listed files chmod, chown and utimens are accepted and change nothing
// (config tools call them on every file they write); a truncate reaches the
// document being written (Service::Truncate) and never sets a value alone.
void Filesystem::SetAttr(fuse_req_t req, fuse_ino_t ino, const struct stat& attr, int to_set) {
  const Node node = Decode(ino);
  if (node.kind == NodeKind::kScratch) return SetScratchAttr(req, ino, attr, to_set);
  if ((to_set & FUSE_SET_ATTR_SIZE) && node.kind == NodeKind::kAttribute) {
    if (AttributeInfo(node.attr).write == WriteKind::kReadOnly) {
      return ReplyStatus(req, Status::AccessDenied(std::string(AttributeInfo(node.attr).name) + " is read-only"));
    }
    Status truncated = service_.Truncate(node.id, node.attr, static_cast<uint64_t>(attr.st_size));
    if (!truncated.ok()) return ReplyStatus(req, truncated);
  }
  GetAttr(req, ino);
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

void Filesystem::ReadLink(fuse_req_t req, fuse_ino_t ino) {
  auto target = Content(ino);
  if (!target.ok()) return ReplyStatus(req, target.status());
  fuse_reply_readlink(req, target->c_str());
}

// --- folders and scratch files ---------------------------------------------

void Filesystem::MakeDir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  if (Decode(parent).kind == NodeKind::kAcceleratorDir) {
    auto made = MakeScratch(req, parent, name, true, mode);
    return made.ok() ? ReplyScratchEntry(req, *made) : ReplyStatus(req, made.status());
  }
  if (Decode(parent).kind != NodeKind::kAccelerators) return ReplyStatus(req, NotHere("mkdir"));
  Status created = service_.CreateWithUuid(name);
  if (!created.ok()) {
    spdlog::warn("mkdir accelerators/{}: refused: {}", name, created.message());
    return ReplyStatus(req, created);
  }
  Lookup(req, parent, name);
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

void Filesystem::RemoveDir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  const Node node = Decode(parent);
  if (node.kind == NodeKind::kAcceleratorDir && !Listed(node, name)) {
    return ReplyStatus(req, scratch_.Remove(node.id, name, true));
  }
  if (node.kind == NodeKind::kAccelerators) {
    auto a = service_.FindByUuid(name);
    if (!a) return ReplyErrno(req, ENOENT);
    if (!scratch_.Empty(a->id)) {
      return ReplyStatus(req, Status::NotEmpty(std::string(name) + " holds scratch files; remove them first"));
    }
    Status removed = service_.Remove(a->id);
    if (removed.ok()) scratch_.DropFolder(a->id);
    return ReplyStatus(req, removed);
  }
  if (Listed(node, name)) {
    const bool folder = node.kind == NodeKind::kRoot && std::strcmp(name, "create") != 0;
    return ReplyStatus(req, folder ? Status::NotPermitted("rmdir: listed folders cannot be removed")
                                   : Status::NotFolder(std::string(name) + " is a file"));
  }
  ReplyErrno(req, ENOENT);
}

void Filesystem::Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  const Node node = Decode(parent);
  if (node.kind == NodeKind::kAcceleratorDir && !Listed(node, name)) {
    return ReplyStatus(req, scratch_.Remove(node.id, name, false));
  }
  if (!Listed(node, name)) return ReplyErrno(req, ENOENT);
  ReplyStatus(req, Status::NotPermitted(std::string(name) + ": listed files cannot be removed or renamed"));
}

bool Filesystem::Listed(const Node& parent, const char* name) const {
  switch (parent.kind) {
    case NodeKind::kRoot:
      return !std::strcmp(name, "accelerators") || !std::strcmp(name, "by-name") || !std::strcmp(name, "create");
    case NodeKind::kAccelerators:
      return service_.FindByUuid(name) != nullptr;
    case NodeKind::kByName:
      return service_.FindByName(name) != nullptr;
    case NodeKind::kAcceleratorDir:
      return FindAttribute(name) != nullptr && service_.FindById(parent.id) != nullptr;
    default:
      return false;
  }
}

// A listed name is never renamed (EPERM). A scratch file moves among
// scratch names, or replaces a listed file's value (CommitScratch).
void Filesystem::Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
                        const char* new_name, unsigned flags) {
  const Node from = Decode(parent);
  const Node to = Decode(new_parent);
  if (Listed(from, name)) {
    return ReplyStatus(req, Status::NotPermitted(std::string(name) + ": listed files cannot be removed or renamed"));
  }
  if (flags & ~RENAME_NOREPLACE) return ReplyStatus(req, Status::Invalid("rename: only RENAME_NOREPLACE is supported"));
  if (from.kind != NodeKind::kAcceleratorDir || !scratch_.Find(from.id, name)) return ReplyErrno(req, ENOENT);
  if (to.kind != NodeKind::kAcceleratorDir || !service_.FindById(to.id)) {
    return ReplyStatus(req, NotHere("rename").Prefixed(std::string(new_name) + " (scratch files live in "
                                                                               "accelerator folders only)"));
  }
  if (FindAttribute(new_name)) return ReplyStatus(req, CommitScratch(from, name, to, new_name, flags));
  ReplyStatus(req, scratch_.Move(from.id, name, to.id, new_name, flags & RENAME_NOREPLACE));
}

Status Filesystem::CommitScratch(const Node& from, const char* name, const Node& to, const char* new_name,
                                 unsigned flags) {
  if (flags & RENAME_NOREPLACE) return Status::Exists(std::string(new_name) + " exists");
  const Attr attr = FindAttribute(new_name)->attr;
  return scratch_.Commit(from.id, name,
                         [&](const std::string& content) { return service_.Replace(to.id, attr, content, name); });
}

void Filesystem::OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const Node node = Decode(ino);
  auto listing = std::make_unique<DirListing>();
  listing->push_back({".", ino, S_IFDIR});
  listing->push_back({"..", node.kind == NodeKind::kAcceleratorDir ? kAcceleratorsIno : kRootIno, S_IFDIR});
  switch (node.kind) {
    case NodeKind::kRoot:
      listing->push_back({"accelerators", kAcceleratorsIno, S_IFDIR});
      listing->push_back({"by-name", kByNameIno, S_IFDIR});
      listing->push_back({"create", kCreateIno, S_IFREG});
      break;
    case NodeKind::kAccelerators:
      for (const auto& a : service_.List()) listing->push_back({a->uuid, DirIno(a->id), S_IFDIR});
      break;
    case NodeKind::kByName:
      for (const auto& a : service_.List()) listing->push_back({a->name, LinkIno(a->id), S_IFLNK});
      break;
    case NodeKind::kAcceleratorDir:
      if (!service_.FindById(node.id)) return ReplyErrno(req, ENOENT);
      for (const AttrInfo& info : Attributes()) listing->push_back({info.name, AttrIno(node.id, info.attr), S_IFREG});
      for (const auto& [name, entry] : scratch_.List(node.id)) {
        listing->push_back(
            {name, ScratchIno(entry->number()), static_cast<mode_t>(entry->is_folder() ? S_IFDIR : S_IFREG)});
      }
      break;
    case NodeKind::kScratch: {  // a scratch folder holds nothing
      auto entry = scratch_inodes_.Find(ino);
      if (!entry) return ReplyErrno(req, ENOENT);
      if (!entry->is_folder()) return ReplyErrno(req, ENOTDIR);
      break;
    }
    default:
      return ReplyErrno(req, ENOTDIR);
  }
  fi->fh = reinterpret_cast<uint64_t>(listing.release());
  fuse_reply_open(req, fi);
}

void Filesystem::ReadDir(fuse_req_t req, size_t size, off_t offset, fuse_file_info* fi) {
  const DirListing& listing = *reinterpret_cast<DirListing*>(fi->fh);
  std::vector<char> buffer(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(offset); i < listing.size(); ++i) {
    struct stat st {};
    st.st_ino = listing[i].ino;
    st.st_mode = listing[i].type;
    const size_t need = fuse_add_direntry(req, buffer.data() + used, size - used, listing[i].name.c_str(), &st,
                                          static_cast<off_t>(i + 1));
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buffer.data(), used);
}

void Filesystem::ReleaseDir(fuse_req_t req, fuse_file_info* fi) {
  delete reinterpret_cast<DirListing*>(fi->fh);
  fuse_reply_err(req, 0);
}

// --- files -------------------------------------------------------------------

void Filesystem::Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const Node node = Decode(ino);
  auto file = std::make_unique<OpenFile>();
  if (node.kind == NodeKind::kScratch) {
    file->scratch = scratch_inodes_.Find(ino);
    if (!file->scratch) return ReplyErrno(req, ENOENT);
    if (file->scratch->is_folder()) return ReplyErrno(req, EISDIR);
    if (fi->flags & O_TRUNC) (void)file->scratch->Truncate(0);
    file->append = fi->flags & O_APPEND;
    fi->fh = reinterpret_cast<uint64_t>(file.release());
    fi->direct_io = 1;
    return (void)fuse_reply_open(req, fi);
  }
  if (node.kind == NodeKind::kCreate && WantsRead(fi)) {
    return ReplyStatus(req, Status::AccessDenied("create is write-only"));
  }
  if (node.kind == NodeKind::kAttribute) {
    const AttrInfo& info = AttributeInfo(node.attr);
    if (WantsWrite(fi) && info.write == WriteKind::kReadOnly) {
      return ReplyStatus(req, Status::AccessDenied(std::string(info.name) + " is read-only"));
    }
    if (!service_.FindById(node.id)) return ReplyErrno(req, ENOENT);
  } else if (node.kind != NodeKind::kCreate) {
    return ReplyErrno(req, EISDIR);
  }
  file->writer = WantsWrite(fi);
  if (file->writer) WriterOpened(ino);
  fi->fh = reinterpret_cast<uint64_t>(file.release());
  fi->direct_io = 1;
  fuse_reply_open(req, fi);
}

void Filesystem::Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi) {
  if (const auto& scratch = FileOf(fi).scratch) {
    const std::string data = scratch->Read(static_cast<uint64_t>(offset), size);
    return (void)fuse_reply_buf(req, data.data(), data.size());
  }
  std::shared_ptr<const std::string> content;
  {
    OpenFile& file = FileOf(fi);
    std::lock_guard lock(file.mu);
    if (offset == 0 || !file.content) {
      auto rendered = Content(ino);
      if (!rendered.ok()) return ReplyStatus(req, rendered.status());
      file.content = std::make_shared<const std::string>(std::move(*rendered));
    }
    content = file.content;
  }
  // Replied outside the lock: once the reply is out, the reader may close and
  // `release` may free `file` on another thread.
  const size_t start = std::min(static_cast<size_t>(offset), content->size());
  fuse_reply_buf(req, content->data() + start, std::min(size, content->size() - start));
}

void Filesystem::Write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t offset,
                       fuse_file_info* fi) {
  const Node node = Decode(ino);
  const std::string_view bytes(data, size);
  if (const auto& scratch = FileOf(fi).scratch) {
    const uint64_t at = FileOf(fi).append ? scratch->size() : static_cast<uint64_t>(offset);
    Status written = scratch->Write(at, bytes);
    return written.ok() ? (void)fuse_reply_write(req, size) : ReplyStatus(req, written);
  }
  const Status written = node.kind == NodeKind::kCreate
                             ? service_.WriteCreate(static_cast<uint64_t>(offset), bytes)
                             : service_.Write(node.id, node.attr, static_cast<uint64_t>(offset), bytes);
  if (!written.ok()) {
    if (node.kind == NodeKind::kCreate) spdlog::warn("refused: {}", written.message());
    return ReplyStatus(req, written);
  }
  fuse_reply_write(req, size);
}

void Filesystem::Flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (!FileOf(fi).writer) return ReplyErrno(req, 0);
  const Node node = Decode(ino);
  const Status flushed = node.kind == NodeKind::kCreate ? service_.FlushCreate() : service_.Flush(node.id, node.attr);
  ReplyStatus(req, flushed);
}

void Filesystem::Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  std::unique_ptr<OpenFile> file(&FileOf(fi));
  if (file->writer && LastWriterClosed(ino)) {
    const Node node = Decode(ino);
    if (node.kind == NodeKind::kCreate) {
      service_.EndCreateWrites();
    } else {
      service_.EndWrites(node.id, node.attr);
    }
  }
  fuse_reply_err(req, 0);
}

void Filesystem::WriterOpened(fuse_ino_t ino) {
  std::lock_guard lock(writers_mu_);
  ++writers_[ino];
}

bool Filesystem::LastWriterClosed(fuse_ino_t ino) {
  std::lock_guard lock(writers_mu_);
  if (--writers_[ino] > 0) return false;
  writers_.erase(ino);
  return true;
}

}  // namespace cyborgfs::fs
