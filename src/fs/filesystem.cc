#include "filesystem.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include "nodes.h"
#include "replies.h"

namespace cyborgfs::fs {
namespace {

struct DirEntry {
  std::string name;
  fuse_ino_t ino;
  mode_t type;
};
using DirListing = std::vector<DirEntry>;

Filesystem& Self(fuse_req_t req) { return *static_cast<Filesystem*>(fuse_req_userdata(req)); }
bool WantsWrite(const fuse_file_info* fi) { return (fi->flags & O_ACCMODE) != O_RDONLY; }
bool WantsRead(const fuse_file_info* fi) { return (fi->flags & O_ACCMODE) != O_WRONLY; }

// Runs one request's handler. An exception must not cross into libfuse's C
// code: it is logged and the request fails with EIO; the daemon stays up.
template <typename Handler>
void Guarded(fuse_req_t req, Op op, Handler&& handler) {
  Self(req).Count(op);
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
  ops.lookup = [](fuse_req_t r, fuse_ino_t p, const char* n) {
    Guarded(r, Op::kLookup, [&] { Self(r).Lookup(r, p, n); });
  };
  ops.getattr = [](fuse_req_t r, fuse_ino_t i, fuse_file_info*) {
    Guarded(r, Op::kGetattr, [&] { Self(r).GetAttr(r, i); });
  };
  ops.setattr = [](fuse_req_t r, fuse_ino_t i, struct stat* a, int s, fuse_file_info*) {
    Guarded(r, Op::kSetattr, [&] { Self(r).SetAttr(r, i, *a, s); });
  };
  ops.forget = [](fuse_req_t r, fuse_ino_t i, uint64_t n) {
    Self(r).Count(Op::kForget);
    Self(r).Forget(i, n);
    fuse_reply_none(r);
  };
  ops.forget_multi = [](fuse_req_t r, size_t count, fuse_forget_data* forgets) {
    Self(r).Count(Op::kForget);
    for (size_t k = 0; k < count; ++k) Self(r).Forget(forgets[k].ino, forgets[k].nlookup);
    fuse_reply_none(r);
  };
  ops.readlink = [](fuse_req_t r, fuse_ino_t i) { Guarded(r, Op::kReadlink, [&] { Self(r).ReadLink(r, i); }); };
  ops.mkdir = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m) {
    Guarded(r, Op::kMkdir, [&] { Self(r).MakeDir(r, p, n, m); });
  };
  ops.rmdir = [](fuse_req_t r, fuse_ino_t p, const char* n) {
    Guarded(r, Op::kRmdir, [&] { Self(r).RemoveDir(r, p, n); });
  };
  ops.unlink = [](fuse_req_t r, fuse_ino_t p, const char* n) {
    Guarded(r, Op::kUnlink, [&] { Self(r).Unlink(r, p, n); });
  };
  ops.rename = [](fuse_req_t r, fuse_ino_t p, const char* n, fuse_ino_t np, const char* nn, unsigned f) {
    Guarded(r, Op::kRename, [&] { Self(r).Rename(r, p, n, np, nn, f); });
  };
  ops.mknod = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, dev_t) {
    Guarded(r, Op::kMknod, [&] { Self(r).MakeNode(r, p, n, m); });
  };
  ops.create = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, fuse_file_info* fi) {
    Guarded(r, Op::kCreate, [&] { Self(r).Create(r, p, n, m, fi); });
  };
  ops.symlink = [](fuse_req_t r, const char*, fuse_ino_t, const char*) {
    Self(r).Count(Op::kSymlink);
    ReplyStatus(r, NotHere("symlink"));
  };
  ops.link = [](fuse_req_t r, fuse_ino_t, fuse_ino_t, const char*) {
    Self(r).Count(Op::kLink);
    ReplyStatus(r, Status::NotPermitted("link: listed files cannot be linked"));
  };
  ops.open = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) {
    Guarded(r, Op::kOpen, [&] { Self(r).Open(r, i, fi); });
  };
  ops.read = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t o, fuse_file_info* fi) {
    Guarded(r, Op::kRead, [&] { Self(r).Read(r, i, s, o, fi); });
  };
  ops.write = [](fuse_req_t r, fuse_ino_t i, const char* b, size_t s, off_t o, fuse_file_info* fi) {
    Guarded(r, Op::kWrite, [&] { Self(r).Write(r, i, b, s, o, fi); });
  };
  ops.flush = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) {
    Guarded(r, Op::kFlush, [&] { Self(r).Flush(r, i, fi); });
  };
  ops.release = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) {
    Guarded(r, Op::kRelease, [&] { Self(r).Release(r, i, fi); });
  };
  ops.fsync = [](fuse_req_t r, fuse_ino_t, int, fuse_file_info*) {
    Self(r).Count(Op::kFsync);
    fuse_reply_err(r, 0);  // writes are durable when they return
  };
  ops.opendir = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) {
    Guarded(r, Op::kOpendir, [&] { Self(r).OpenDir(r, i, fi); });
  };
  ops.readdir = [](fuse_req_t r, fuse_ino_t, size_t s, off_t o, fuse_file_info* fi) {
    Guarded(r, Op::kReaddir, [&] { Self(r).ReadDir(r, s, o, fi); });
  };
  ops.releasedir = [](fuse_req_t r, fuse_ino_t, fuse_file_info* fi) {
    Guarded(r, Op::kReleasedir, [&] { Self(r).ReleaseDir(r, fi); });
  };
  ops.fsyncdir = [](fuse_req_t r, fuse_ino_t, int, fuse_file_info*) {
    Self(r).Count(Op::kFsyncdir);
    fuse_reply_err(r, 0);
  };
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
    if (const RootEntry* entry = FindRootEntry(n)) found = entry->ino;
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

void Filesystem::Forget(fuse_ino_t ino, uint64_t count) {
  if (Decode(ino).kind == NodeKind::kScratch) scratch_inodes_.Forget(ino, count);
}

// --- attributes --------------------------------------------------------------

Result<std::string> Filesystem::Content(fuse_ino_t ino) const {
  const Node node = Decode(ino);
  if (node.kind == NodeKind::kCreate || node.kind == NodeKind::kRescan) return std::string();
  if (node.kind == NodeKind::kDrivers) return service_.DriversReport();
  if (node.kind == NodeKind::kStats) return counters_.Render();
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
    case NodeKind::kRescan:
      st.st_mode = S_IFREG | 0200;
      return st;
    case NodeKind::kDrivers:
    case NodeKind::kStats:
      st.st_mode = S_IFREG | 0444;
      st.st_size = static_cast<off_t>(Content(ino)->size());
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
    const bool folder = node.kind == NodeKind::kRoot && FindRootEntry(name)->folder;
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
      return FindRootEntry(name) != nullptr;
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

void Filesystem::OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const Node node = Decode(ino);
  auto listing = std::make_unique<DirListing>();
  listing->push_back({".", ino, S_IFDIR});
  listing->push_back({"..", node.kind == NodeKind::kAcceleratorDir ? kAcceleratorsIno : kRootIno, S_IFDIR});
  switch (node.kind) {
    case NodeKind::kRoot:
      for (const RootEntry& entry : kRootEntries) {
        listing->push_back({entry.name, entry.ino, static_cast<mode_t>(entry.folder ? S_IFDIR : S_IFREG)});
      }
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
  if ((node.kind == NodeKind::kCreate || node.kind == NodeKind::kRescan) && WantsRead(fi)) {
    return ReplyStatus(
        req, Status::AccessDenied(node.kind == NodeKind::kCreate ? "create is write-only" : "rescan is write-only"));
  }
  if (node.kind == NodeKind::kRescan) {  // each write is a request of its own: nothing to collect
    fi->fh = reinterpret_cast<uint64_t>(file.release());
    fi->direct_io = 1;
    return (void)fuse_reply_open(req, fi);
  }
  if (node.kind == NodeKind::kAttribute) {
    const AttrInfo& info = AttributeInfo(node.attr);
    if (WantsWrite(fi) && info.write == WriteKind::kReadOnly) {
      return ReplyStatus(req, Status::AccessDenied(std::string(info.name) + " is read-only"));
    }
    if (!service_.FindById(node.id)) return ReplyErrno(req, ENOENT);
  } else if (node.kind == NodeKind::kDrivers || node.kind == NodeKind::kStats) {
    if (WantsWrite(fi)) return ReplyStatus(req, Status::AccessDenied("the file is read-only"));
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
    Status written = FileOf(fi).append ? scratch->Append(bytes) : scratch->Write(static_cast<uint64_t>(offset), bytes);
    return written.ok() ? (void)fuse_reply_write(req, size) : ReplyStatus(req, written);
  }
  const Status written = node.kind == NodeKind::kCreate ? service_.WriteCreate(static_cast<uint64_t>(offset), bytes)
                         : node.kind == NodeKind::kRescan
                             ? service_.WriteRescan(bytes)
                             : service_.Write(node.id, node.attr, static_cast<uint64_t>(offset), bytes);
  if (!written.ok()) {
    if (node.kind == NodeKind::kCreate || node.kind == NodeKind::kRescan)
      spdlog::warn("refused: {}", written.message());
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
