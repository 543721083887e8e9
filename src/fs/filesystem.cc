#include "filesystem.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include "cyborgfs/audit.h"
#include "cyborgfs/values.h"
#include "fleet_tree.h"
#include "nodes.h"
#include "replies.h"

namespace cyborgfs::fs {
namespace {

Filesystem& Self(fuse_req_t req) { return *static_cast<Filesystem*>(fuse_req_userdata(req)); }

// Who sent `req`. The kernel's write-back of a shared mapping's dirty pages
// comes with pid 0 and no credentials.
Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* context = fuse_req_ctx(req);
  if (context->pid == 0) return Caller{Caller::Kind::kKernelWriteback};
  return Caller::Process(context->uid, context->gid, context->pid);
}

// Runs one request's handler. An exception must not cross into libfuse's C
// code: it is logged and the request fails with EIO; the daemon stays up.
template <typename Handler>
void Guarded(fuse_req_t req, Op op, fuse_ino_t about, Handler&& handler) {
  Self(req).Count(op, about);
  try {
    handler();
  } catch (const std::exception& e) {
    spdlog::error("internal error, request failed with EIO: {}", e.what());
    fuse_reply_err(req, EIO);
  }
}

// A request the kernel stops sending once answered ENOSYS.
void NotImplemented(fuse_req_t req, Op op) {
  Self(req).Count(op, 0);
  fuse_reply_err(req, ENOSYS);
}

// The C callbacks: each hands the request to the Filesystem in its userdata.
const fuse_lowlevel_ops kOperations = [] {
  fuse_lowlevel_ops ops{};
  ops.lookup = [](fuse_req_t r, fuse_ino_t p, const char* n) {
    const RootEntry* named = p == kRootIno ? FindRootEntry(n) : nullptr;
    Guarded(r, Op::kLookup, named ? named->ino : 0, [&] { Self(r).Lookup(r, p, n); });
  };
  ops.getattr = [](fuse_req_t r, fuse_ino_t i, fuse_file_info*) {
    Guarded(r, Op::kGetattr, i, [&] { Self(r).GetAttr(r, i); });
  };
  ops.setattr = [](fuse_req_t r, fuse_ino_t i, struct stat* a, int s, fuse_file_info*) {
    Guarded(r, Op::kSetattr, i, [&] { Self(r).SetAttr(r, i, *a, s); });
  };
  ops.forget = [](fuse_req_t r, fuse_ino_t i, uint64_t n) {
    Self(r).Count(Op::kForget, i);
    Self(r).Forget(i, n);
    fuse_reply_none(r);
  };
  ops.forget_multi = [](fuse_req_t r, size_t count, fuse_forget_data* forgets) {
    Self(r).Count(Op::kForget, 0);
    for (size_t k = 0; k < count; ++k) Self(r).Forget(forgets[k].ino, forgets[k].nlookup);
    fuse_reply_none(r);
  };
  ops.readlink = [](fuse_req_t r, fuse_ino_t i) { Guarded(r, Op::kReadlink, i, [&] { Self(r).ReadLink(r, i); }); };
  ops.mkdir = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m) {
    Guarded(r, Op::kMkdir, 0, [&] { Self(r).MakeDir(r, p, n, m); });
  };
  ops.rmdir = [](fuse_req_t r, fuse_ino_t p, const char* n) {
    Guarded(r, Op::kRmdir, 0, [&] { Self(r).RemoveDir(r, p, n); });
  };
  ops.unlink = [](fuse_req_t r, fuse_ino_t p, const char* n) {
    Guarded(r, Op::kUnlink, 0, [&] { Self(r).Unlink(r, p, n); });
  };
  ops.rename = [](fuse_req_t r, fuse_ino_t p, const char* n, fuse_ino_t np, const char* nn, unsigned f) {
    Guarded(r, Op::kRename, 0, [&] { Self(r).Rename(r, p, n, np, nn, f); });
  };
  ops.mknod = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, dev_t) {
    Guarded(r, Op::kMknod, 0, [&] { Self(r).MakeNode(r, p, n, m); });
  };
  ops.symlink = [](fuse_req_t r, const char*, fuse_ino_t p, const char*) {
    Self(r).Count(Op::kSymlink, 0);
    // As for a fifo or a device node (mknod): an accelerator folder takes only regular scratch files.
    ReplyStatus(r, Decode(p).kind == NodeKind::kAcceleratorDir
                       ? Status::NotPermitted("symlink: only regular scratch files can be made")
                   : IsFleet(Decode(p).kind) ? fleet_tree::ReadOnly("symlink")
                                             : NotHere("symlink"));
  };
  ops.link = [](fuse_req_t r, fuse_ino_t, fuse_ino_t, const char*) {
    Self(r).Count(Op::kLink, 0);
    ReplyStatus(r, Status::NotPermitted("link: listed files cannot be linked"));
  };
  // No per-open state: opens and closes are the kernel's own (zero-message
  // opens, folders too: the kernel then keeps every listing, FOPEN_CACHE_DIR),
  // and a create is a mknod followed by such an open.
  ops.open = [](fuse_req_t r, fuse_ino_t, fuse_file_info*) { NotImplemented(r, Op::kOpen); };
  ops.opendir = [](fuse_req_t r, fuse_ino_t, fuse_file_info*) { NotImplemented(r, Op::kOpendir); };
  ops.flush = [](fuse_req_t r, fuse_ino_t, fuse_file_info*) { NotImplemented(r, Op::kFlush); };
  ops.create = [](fuse_req_t r, fuse_ino_t, const char*, mode_t, fuse_file_info*) { NotImplemented(r, Op::kCreate); };
  ops.read = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t o, fuse_file_info*) {
    Guarded(r, Op::kRead, i, [&] { Self(r).Read(r, i, s, o); });
  };
  ops.write = [](fuse_req_t r, fuse_ino_t i, const char* b, size_t s, off_t o, fuse_file_info* fi) {
    Guarded(r, Op::kWrite, i, [&] { Self(r).Write(r, i, b, s, o, fi); });
  };
  ops.fsync = [](fuse_req_t r, fuse_ino_t, int, fuse_file_info*) {
    Self(r).Count(Op::kFsync, 0);
    fuse_reply_err(r, 0);  // writes are durable when they return
  };
  ops.readdir = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t o, fuse_file_info*) {
    Guarded(r, Op::kReaddir, i, [&] { Self(r).ReadDir(r, i, s, o, false); });
  };
  ops.readdirplus = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t o, fuse_file_info*) {
    Guarded(r, Op::kReaddirplus, i, [&] { Self(r).ReadDir(r, i, s, o, true); });
  };
  ops.poll = [](fuse_req_t r, fuse_ino_t i, fuse_file_info*, fuse_pollhandle* ph) {
    Guarded(r, Op::kPoll, i, [&] { Self(r).Poll(r, i, ph); });
  };
  ops.fsyncdir = [](fuse_req_t r, fuse_ino_t, int, fuse_file_info*) {
    Self(r).Count(Op::kFsyncdir, 0);
    fuse_reply_err(r, 0);
  };
  ops.init = [](void*, fuse_conn_info* conn) {
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;  // errors must reach write(2)
    // Without opens reaching the daemon, an atomic O_TRUNC would empty the
    // kernel's copy of a value the daemon keeps, and never truncate a scratch
    // file: O_TRUNC is a SETATTR instead, which truncates a scratch file and
    // changes no value (a truncate alone never sets one). It costs a request.
    conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
    const unsigned wanted = FUSE_CAP_NO_OPEN_SUPPORT | FUSE_CAP_NO_OPENDIR_SUPPORT | FUSE_CAP_AUTO_INVAL_DATA |
                            FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_CACHE_SYMLINKS;
    conn->want |= conn->capable & wanted;
  };
  return ops;
}();

}  // namespace

Filesystem::Filesystem(Service& service, gid_t admin_group, size_t scratch_limit, FleetBoard* fleet,
                       AcceleratorRequests* requests)
    : service_(service),
      fleet_(fleet),
      requests_(requests),
      writes_(service, this, requests),
      scratch_(scratch_limit),
      uid_(geteuid()),
      admin_group_(admin_group),
      mounted_at_(std::time(nullptr)) {
  service_.AddListener(
      this, [this](const Service::Snapshot& before, const Service::Snapshot& after) { Invalidate(before, after); });
  notifier_.OnStale([this](fuse_ino_t ino) { return watchers_.Watching(ino); },
                    [this](fuse_ino_t ino) { watchers_.Changed(ino); });  // a watcher then reads the new value
  if (fleet_) {
    fleet_->AddListener([this](const FleetView& before, const FleetView& after) { InvalidateFleet(before, after); });
  }
}

const fuse_lowlevel_ops& Filesystem::Operations() { return kOperations; }

// --- names -------------------------------------------------------------------

Status Filesystem::MakeEntry(fuse_req_t req, fuse_ino_t ino, fuse_entry_param& entry,
                             const ScratchSpace::Entry& scratch) {
  kernel_.Remember(ino, scratch);
  auto described = Describe(ino, fuse_req_ctx(req)->pid);
  if (!described.ok()) {
    kernel_.Forget(ino, 1);
    return described.status();
  }
  entry.ino = ino;
  entry.attr = described->st;
  entry.attr_timeout = entry.entry_timeout = described->timeout;
  kernel_.Told(ino, described->told);
  return Status::Ok();
}

double Filesystem::EntryTimeout(fuse_ino_t parent) const {
  const NodeKind kind = Decode(parent).kind;
  const bool changing = kind == NodeKind::kAccelerators || kind == NodeKind::kByName;
  return changing && notifier_.Stuck(parent) ? kStuckCacheSeconds : kCacheSeconds;
}

void Filesystem::ReplyEntry(fuse_req_t req, fuse_ino_t parent, fuse_ino_t ino) {
  fuse_entry_param entry{};
  if (Status made = MakeEntry(req, ino, entry); !made.ok()) return ReplyStatus(req, made);
  entry.entry_timeout = std::min(entry.entry_timeout, EntryTimeout(parent));
  if (fuse_reply_entry(req, &entry) != 0) kernel_.Forget(ino, 1);
}

// A name that is not there, cached as such: whatever makes it appear either
// goes through the kernel (mkdir, mknod, rename) or is invalidated (Invalidate,
// for the names in accelerators/ and by-name/ that were told absent:
// `cacheable` says the name was recorded so, before it was looked for).
void Filesystem::ReplyNoEntry(fuse_req_t req, fuse_ino_t parent, bool cacheable) {
  const NodeKind kind = Decode(parent).kind;
  if (kind == NodeKind::kScratch || !cacheable) return ReplyErrno(req, ENOENT);
  fuse_entry_param entry{};
  entry.entry_timeout = EntryTimeout(parent);
  fuse_reply_entry(req, &entry);
}

void Filesystem::Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  const Node node = Decode(parent);
  const std::string_view n(name);
  fuse_ino_t found = 0;
  bool cacheable = true;  // may the kernel keep "absent"?
  if (node.kind == NodeKind::kRoot) {
    if (const RootEntry* entry = FindRootEntry(n); entry && Shown(*entry)) found = entry->ino;
  } else if (IsFleet(node.kind)) {
    // Not cached, absent names neither: the view changes without the kernel.
    found = fleet_ ? fleet_tree::Lookup(*fleet_->Current(), node, n) : 0;
    if (found == 0) return ReplyErrno(req, ENOENT);
  } else if (node.kind == NodeKind::kAccelerators || node.kind == NodeKind::kByName) {
    // Recorded before the search: a name that appears meanwhile is invalidated after this reply.
    cacheable = negative_.Told(parent, n);
    const Service::Snapshot a = node.kind == NodeKind::kAccelerators ? service_.FindByUuid(n) : service_.FindByName(n);
    if (a) {
      (void)negative_.Take(parent, n);
      found = node.kind == NodeKind::kAccelerators ? DirIno(a->id) : LinkIno(a->id);
    }
  } else if (node.kind == NodeKind::kAcceleratorDir) {
    if (!service_.FindById(node.id)) return ReplyErrno(req, ENOENT);
    if (const AttrInfo* info = FindAttribute(n)) {
      found = AttrIno(node.id, info->attr);
    } else if (auto entry = scratch_.Find(node.id, n)) {
      return ReplyScratchEntry(req, entry);
    }
  }
  if (found == 0) return ReplyNoEntry(req, parent, cacheable);
  ReplyEntry(req, parent, found);
}

// --- attributes --------------------------------------------------------------

namespace {

timespec At(int64_t seconds, uint64_t revision) {
  return timespec{static_cast<time_t>(seconds), static_cast<long>(revision % 1000000000)};
}

// The admin group may do what the owner may.
mode_t GroupLikeOwner(mode_t mode) { return (mode & ~mode_t{070}) | ((mode & 0700) >> 3); }

timespec Now() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return now;
}

std::string LinkTarget(const Accelerator& a) { return "../accelerators/" + a.uuid; }

}  // namespace

Result<fleet_tree::Item> Filesystem::FleetItem(const Node& node) const {
  if (!fleet_) return Status::NotFound("no fleet (--fleet)");
  return fleet_tree::Describe(*fleet_->Current(), node, mounted_at_);
}

Result<std::string> Filesystem::Content(fuse_ino_t ino) const {
  const Node node = Decode(ino);
  if (node.kind == NodeKind::kCreate || node.kind == NodeKind::kRescan || node.kind == NodeKind::kFleetRequestCreate) {
    return std::string();
  }
  if (node.kind == NodeKind::kList) return service_.ListDocument()->body;
  if (IsFleet(node.kind)) {  // a link of fleet/accelerators/
    auto item = FleetItem(node);
    if (!item.ok()) return item.status();
    return item->text();
  }
  auto a = service_.FindById(node.id);
  if (!a) return Status::NotFound("no such accelerator");
  if (node.kind == NodeKind::kLink) return LinkTarget(*a);
  return AttributeInfo(node.attr).render(*a);
}

Result<Renderings::Rendering> Filesystem::Render(fuse_ino_t ino) const {
  const Node node = Decode(ino);
  Renderings::Rendering r;
  if (IsFleet(node.kind)) {
    auto item = FleetItem(node);
    if (!item.ok()) return item.status();
    r.text = item->shared ? item->shared : std::make_shared<const std::string>(std::move(item->content));
    r.mode = item->mode;
    r.mtime = item->mtime;
    return r;
  }
  if (node.kind == NodeKind::kDrivers) {
    r.text = std::make_shared<const std::string>(service_.DriversReport());
  } else {
    Json stats = counters_.Counts();
    stats["store_commits"] = service_.StoreCommits();
    stats["watchers"] = watchers_.Size();
    r.text = std::make_shared<const std::string>(RenderJson(stats));
  }
  r.mode = S_IFREG | GroupLikeOwner(0444);
  r.mtime = Now();
  return r;
}

Result<Renderings::Held> Filesystem::Rendered(fuse_ino_t ino, pid_t reader, Renderings::Ask ask) const {
  return renderings_.For(ino, reader, ask, Renderings::Clock::now(), [&] { return Render(ino); });
}

// Every value has its own mtime (the accelerator's last change, with its
// revision as nanoseconds), so the kernel, seeing a new one, drops its pages.
Result<Filesystem::Described> Filesystem::Describe(fuse_ino_t ino, pid_t reader) const {
  Described d;
  struct stat& st = d.st;
  st.st_ino = ino;
  st.st_uid = uid_;
  st.st_gid = admin_group_;
  st.st_nlink = 1;
  st.st_atim = st.st_mtim = st.st_ctim = At(mounted_at_, 0);
  const Node node = Decode(ino);
  if (ChangesByItself(node.kind)) {  // never cached: every look is answered from the reader's rendering
    auto held = Rendered(ino, reader, Renderings::Ask::kAttributes);
    if (!held.ok()) return held.status();
    d.timeout = 0;
    st.st_mode = (*held)->mode;
    st.st_size = static_cast<off_t>((*held)->text->size());
    st.st_mtim = st.st_ctim = (*held)->mtime;
    return d;
  }
  if (IsFleet(node.kind)) {  // fleet/'s folders and links: never cached either
    auto item = FleetItem(node);
    if (!item.ok()) return item.status();
    d.timeout = 0;
    st.st_mode = item->mode;
    st.st_nlink = S_ISDIR(item->mode) ? 2 : 1;
    st.st_size = S_ISDIR(item->mode) ? 0 : static_cast<off_t>(item->text().size());
    st.st_mtim = st.st_ctim = item->mtime;
    return d;
  }
  auto file = [&](mode_t mode, const std::string& content) {
    st.st_mode = S_IFREG | GroupLikeOwner(mode);
    st.st_size = static_cast<off_t>(content.size());
    d.told = KernelInodes::Fingerprint(content);
    return d;
  };
  switch (node.kind) {
    case NodeKind::kRoot:
      st.st_mode = S_IFDIR | 0755;
      st.st_nlink = 2;
      return d;
    case NodeKind::kAccelerators:
    case NodeKind::kByName:
      st.st_mode = S_IFDIR | GroupLikeOwner(node.kind == NodeKind::kByName ? 0555 : 0755);
      st.st_nlink = 2;
      st.st_mtim = st.st_ctim = At(mounted_at_, listing_revision_.load());
      return d;
    case NodeKind::kCreate:
    case NodeKind::kRescan:
    case NodeKind::kFleetRequestCreate:
      st.st_mtim = st.st_ctim = At(mounted_at_, kernel_.MtimeBumps(ino));
      return file(0200, "");
    case NodeKind::kList: {  // marked stale at every change: its mtime is the revision's
      const auto listing = service_.ListDocument();
      st.st_mode = S_IFREG | 0444;
      st.st_size = static_cast<off_t>(listing->body.size());
      st.st_mtim = st.st_ctim = At(listing->rendered_at, listing->revision);
      d.told = listing->revision + 1;
      return d;
    }
    case NodeKind::kScratch:
      if (auto entry = kernel_.Scratch(ino)) return DescribeScratch(ino, *entry);
      return Status::NotFound("no such scratch file");
    case NodeKind::kUnknown:
      return Status::NotFound("no such file");
    default:
      break;
  }
  auto a = service_.FindById(node.id);
  if (!a) return Status::NotFound("no such accelerator");
  st.st_mtim = st.st_ctim = At(a->updated_at, a->revision + kernel_.MtimeBumps(ino));
  switch (node.kind) {
    case NodeKind::kAcceleratorDir:  // its listing changes only through the kernel
      st.st_mtim = st.st_ctim = At(a->created_at, 0);
      st.st_mode = S_IFDIR | GroupLikeOwner(0755);
      st.st_nlink = 2;
      return d;
    case NodeKind::kLink:  // the target never changes
      st.st_mtim = st.st_ctim = At(a->created_at, 0);
      st.st_mode = S_IFLNK | 0777;
      st.st_size = static_cast<off_t>(LinkTarget(*a).size());
      return d;
    default:
      return file(AttributeInfo(node.attr).mode, AttributeInfo(node.attr).render(*a));
  }
}

void Filesystem::ReplyAttr(fuse_req_t req, fuse_ino_t ino) {
  auto described = Describe(ino, fuse_req_ctx(req)->pid);
  if (!described.ok()) return ReplyStatus(req, described.status());
  kernel_.Told(ino, described->told);
  fuse_reply_attr(req, &described->st, described->timeout);
}

void Filesystem::GetAttr(fuse_req_t req, fuse_ino_t ino) { ReplyAttr(req, ino); }

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
    auto truncated = writes_.Truncate(node.id, node.attr, static_cast<uint64_t>(attr.st_size), CallerOf(req));
    if (truncated.ok()) Invalidate(truncated->before, truncated->after, ino);
    notifier_.AwaitStale();
    if (!truncated.ok()) return ReplyStatus(req, truncated.status());
  } else if ((to_set & FUSE_SET_ATTR_SIZE) && IsFleet(node.kind)) {
    return ReplyStatus(req, fleet_tree::ReadOnly("truncate"));
  } else if ((to_set & FUSE_SET_ATTR_SIZE) &&
             (node.kind == NodeKind::kDrivers || node.kind == NodeKind::kStats || node.kind == NodeKind::kList)) {
    return ReplyStatus(req, Status::AccessDenied("the file is read-only"));
  }
  ReplyAttr(req, ino);
}

void Filesystem::ReadLink(fuse_req_t req, fuse_ino_t ino) {
  auto target = Content(ino);
  if (!target.ok()) return ReplyStatus(req, target.status());
  fuse_reply_readlink(req, target->c_str());
}

// --- folders and scratch files ---------------------------------------------

void Filesystem::MakeDir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  if (IsFleet(Decode(parent).kind)) return ReplyStatus(req, fleet_tree::ReadOnly("mkdir"));
  if (Decode(parent).kind == NodeKind::kAcceleratorDir) {
    auto made = MakeScratch(req, parent, name, true, mode);
    return made.ok() ? ReplyScratchEntry(req, *made) : ReplyStatus(req, made.status());
  }
  if (Decode(parent).kind != NodeKind::kAccelerators) return ReplyStatus(req, NotHere("mkdir"));
  // A folder's name is its uuid, in the one form a path can take.
  if (!IsCanonicalUuid(name)) {
    const Status why =
        Status::Invalid("\"" + std::string(name) + "\" is not a lowercase canonical uuid (8-4-4-4-12 hex digits)");
    audit::Refused(CallerOf(req), name, "mkdir", why);
    return ReplyStatus(req, why);
  }
  auto created = service_.Create(CreateRequest{name, std::string(name)}, {CallerOf(req), this, "mkdir"});
  if (!created.ok()) return ReplyStatus(req, created.status());  // the Service audited the refusal
  Invalidate(nullptr, created->after, 0, name);
  notifier_.AwaitStale();
  Lookup(req, parent, name);
}

void Filesystem::AwaitFleetView() {
  if (fleet_ && !fleet_->AwaitRead(kAwaitView)) {
    spdlog::debug("fleet view: not read again within {} ms of a change", kAwaitView.count());
  }
}

Status Filesystem::RemoveRequest(const char* name, const Caller& who) {
  if (std::string_view(name) == kFleetRequestsEntry.name) return Status::NotFolder("create is a file");
  if (!fleet_ || !requests_ || !fleet_->Current()->FindRequest(name)) return Status::NotFound("no such request");
  Status deleted = requests_->Delete(name, who);
  if (deleted.ok()) AwaitFleetView();
  return deleted;
}

void Filesystem::RemoveDir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  const Node node = Decode(parent);
  if (node.kind == NodeKind::kFleetRequests) return ReplyStatus(req, RemoveRequest(name, CallerOf(req)));
  if (IsFleet(node.kind)) return ReplyStatus(req, fleet_tree::ReadOnly("rmdir"));
  if (node.kind == NodeKind::kAcceleratorDir && !Listed(node, name)) {
    return ReplyStatus(req, scratch_.Remove(node.id, name, true));
  }
  if (node.kind == NodeKind::kAccelerators) {
    auto a = service_.FindByUuid(name);
    if (!a) return ReplyErrno(req, ENOENT);
    if (!scratch_.Empty(a->id)) {
      return ReplyStatus(req, Status::NotEmpty(std::string(name) + " holds scratch files; remove them first"));
    }
    auto removed = service_.Remove(a->id, {CallerOf(req), this, "rmdir"});
    if (removed.ok()) {
      scratch_.DropFolder(a->id);
      writes_.Forget(a->id);
      Invalidate(removed->before, nullptr);
    }
    notifier_.AwaitStale();
    return ReplyStatus(req, removed.status());
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
  if (IsFleet(node.kind)) return ReplyStatus(req, fleet_tree::ReadOnly("unlink"));
  if (node.kind == NodeKind::kAcceleratorDir && !Listed(node, name)) {
    return ReplyStatus(req, scratch_.Remove(node.id, name, false));
  }
  if (!Listed(node, name)) return ReplyErrno(req, ENOENT);
  ReplyStatus(req, Status::NotPermitted(std::string(name) + ": listed files cannot be removed or renamed"));
}

bool Filesystem::Listed(const Node& parent, const char* name) const {
  switch (parent.kind) {
    case NodeKind::kRoot:
      return FindRootEntry(name) != nullptr && Shown(*FindRootEntry(name));
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
  if (IsFleet(from.kind) || IsFleet(to.kind)) return ReplyStatus(req, fleet_tree::ReadOnly("rename"));
  if (Listed(from, name)) {
    return ReplyStatus(req, Status::NotPermitted(std::string(name) + ": listed files cannot be removed or renamed"));
  }
  if (flags & ~RENAME_NOREPLACE) return ReplyStatus(req, Status::Invalid("rename: only RENAME_NOREPLACE is supported"));
  if (from.kind != NodeKind::kAcceleratorDir || !scratch_.Find(from.id, name)) return ReplyErrno(req, ENOENT);
  if (to.kind != NodeKind::kAcceleratorDir || !service_.FindById(to.id)) {
    return ReplyStatus(req, NotHere("rename").Prefixed(std::string(new_name) + " (scratch files live in "
                                                                               "accelerator folders only)"));
  }
  if (FindAttribute(new_name)) {
    const Status committed = CommitScratch(from, name, to, new_name, flags, CallerOf(req));
    notifier_.AwaitStale();
    return ReplyStatus(req, committed);
  }
  ReplyStatus(req, scratch_.Move(from.id, name, to.id, new_name, flags & RENAME_NOREPLACE));
}

// Folders are listed without state (no opendir reaches the daemon): a
// READDIR offset is a cookie naming where the previous one stopped (1 after
// ".", 2 after "..", then per folder below), stable while entries come and
// go, as READDIRPLUS and READDIR mixing on one stream need (the kernel's
// READDIRPLUS_AUTO). The kernel keeps each listing until the folder's mtime
// or version changes.
namespace {

// Cookies: 3 + index for the root's entries and an accelerator folder's
// files, 2 + id for accelerators and names, kScratchCookies + number for
// scratch files.
constexpr off_t kScratchCookies = 64;

struct Row {
  std::string name;
  fuse_ino_t ino;
  mode_t type;
  off_t cookie;
  ScratchSpace::Entry scratch;  // for a scratch file
};

}  // namespace

namespace {

// The rows of folder `ino` after cookie `offset`, at least `room` of them if
// there are that many.
std::vector<Row> RowsAfter(const Service& service, const ScratchSpace& scratch, const FleetBoard* fleet, fuse_ino_t ino,
                           off_t offset, size_t room) {
  const Node node = Decode(ino);
  std::vector<Row> rows;
  if (IsFleet(node.kind)) {
    if (!fleet) return rows;
    fuse_ino_t parent = kRootIno;
    auto entries = fleet_tree::List(*fleet->Current(), node, offset, parent);
    if (offset < 1) rows.push_back({".", ino, S_IFDIR, 1});
    if (offset < 2) rows.push_back({"..", parent, S_IFDIR, 2});
    for (auto& e : entries) rows.push_back({std::move(e.name), e.ino, e.type, e.cookie});
    return rows;
  }
  if (offset < 1) rows.push_back({".", ino, S_IFDIR, 1});
  if (offset < 2)
    rows.push_back({"..", node.kind == NodeKind::kAcceleratorDir ? kAcceleratorsIno : kRootIno, S_IFDIR, 2});
  const off_t first_index = std::max<off_t>(offset - 2, 0);  // of the entries with cookie 3 + index
  switch (node.kind) {
    case NodeKind::kRoot:
      for (off_t k = first_index; k < static_cast<off_t>(std::size(kRootEntries)); ++k) {
        const RootEntry& e = kRootEntries[k];
        if (e.kind == NodeKind::kFleet && !fleet) continue;
        rows.push_back({e.name, e.ino, static_cast<mode_t>(e.folder ? S_IFDIR : S_IFREG), 3 + k});
      }
      break;
    case NodeKind::kAccelerators:
    case NodeKind::kByName:
      for (const auto& a : service.ListAfter(std::max<off_t>(offset - 2, 0), room)) {
        if (node.kind == NodeKind::kAccelerators) {
          rows.push_back({a->uuid, DirIno(a->id), S_IFDIR, 2 + a->id});
        } else {
          rows.push_back({a->name, LinkIno(a->id), S_IFLNK, 2 + a->id});
        }
      }
      break;
    case NodeKind::kAcceleratorDir: {
      const auto& attributes = Attributes();
      for (off_t k = first_index; k < static_cast<off_t>(attributes.size()); ++k) {
        rows.push_back({attributes[k].name, AttrIno(node.id, attributes[k].attr), S_IFREG, 3 + k});
      }
      const size_t listed = rows.size();
      for (const auto& [name, entry] : scratch.List(node.id)) {
        const off_t cookie = kScratchCookies + static_cast<off_t>(entry->number());
        if (cookie <= offset) continue;
        rows.push_back({name, ScratchIno(entry->number()), static_cast<mode_t>(entry->is_folder() ? S_IFDIR : S_IFREG),
                        cookie, entry});
      }
      std::sort(rows.begin() + static_cast<ptrdiff_t>(listed), rows.end(),
                [](const Row& x, const Row& y) { return x.cookie < y.cookie; });
      break;
    }
    default:
      break;  // a scratch folder holds nothing
  }
  return rows;
}

}  // namespace

void Filesystem::ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, bool plus) {
  const Node node = Decode(ino);
  if (node.kind == NodeKind::kAcceleratorDir && !service_.FindById(node.id)) return ReplyErrno(req, ENOENT);
  if (node.kind == NodeKind::kScratch && !kernel_.Scratch(ino)) return ReplyErrno(req, ENOENT);
  const size_t room = size / 24 + 1;  // no entry takes fewer bytes
  std::vector<char> buffer(size);
  size_t used = 0;
  for (const Row& row : RowsAfter(service_, scratch_, fleet_, ino, offset, room)) {
    char* at = buffer.data() + used;
    const size_t left = size - used;
    fuse_entry_param entry{};
    size_t need;
    if (plus && row.name != "." && row.name != "..") {
      if (!MakeEntry(req, row.ino, entry, row.scratch).ok()) continue;  // gone meanwhile
      need = fuse_add_direntry_plus(req, at, left, row.name.c_str(), &entry, row.cookie);
      if (need > left) kernel_.Forget(row.ino, 1);
    } else {  // "." and ".." carry no entry (the kernel does not look them up)
      entry.attr.st_ino = row.ino;
      entry.attr.st_mode = row.type;
      need = plus ? fuse_add_direntry_plus(req, at, left, row.name.c_str(), &entry, row.cookie)
                  : fuse_add_direntry(req, at, left, row.name.c_str(), &entry.attr, row.cookie);
    }
    if (need > left) break;
    used += need;
  }
  fuse_reply_buf(req, buffer.data(), used);
}

// --- files -------------------------------------------------------------------

namespace {

// The bytes [offset, offset + size) of `text`, as far as it has them.
void ReplySlice(fuse_req_t req, const std::string& text, off_t offset, size_t size) {
  const size_t start = std::min(static_cast<size_t>(offset), text.size());
  fuse_reply_buf(req, text.data() + start, std::min(size, text.size() - start));
}

}  // namespace

// A READ is answered with the current content: pages the kernel caches are
// never older than the value when they were filled.
void Filesystem::Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset) {
  if (Decode(ino).kind == NodeKind::kScratch) {
    auto scratch = kernel_.Scratch(ino);
    if (!scratch) return ReplyErrno(req, ENOENT);
    const std::string data = scratch->Read(static_cast<uint64_t>(offset), size);
    return (void)fuse_reply_buf(req, data.data(), data.size());
  }
  if (ChangesByItself(Decode(ino).kind)) {  // the rendering the reader is reading
    const pid_t reader = fuse_req_ctx(req)->pid;
    auto held = Rendered(ino, reader, Renderings::Ask::kBytes);
    if (!held.ok()) return ReplyStatus(req, held.status());
    const std::string& text = *(*held)->text;
    if (static_cast<size_t>(offset) + size >= text.size()) renderings_.ReadToEnd(ino, reader, *held);
    return ReplySlice(req, text, offset, size);
  }
  if (Decode(ino).kind == NodeKind::kList) {  // megabytes at 10 000 accelerators: not copied per READ
    return ReplySlice(req, service_.ListDocument()->body, offset, size);
  }
  auto content = Content(ino);
  if (!content.ok()) return ReplyStatus(req, content.status());
  ReplySlice(req, *content, offset, size);
}

void Filesystem::Write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t offset,
                       const fuse_file_info* fi) {
  const Node node = Decode(ino);
  const std::string_view bytes(data, size);
  const bool append = fi->flags & O_APPEND;
  if (node.kind == NodeKind::kScratch) {
    auto scratch = kernel_.Scratch(ino);
    if (!scratch) return ReplyErrno(req, ENOENT);
    if (scratch->is_folder()) return ReplyErrno(req, EISDIR);
    Status written = append ? scratch->Append(bytes) : scratch->Write(static_cast<uint64_t>(offset), bytes);
    return written.ok() ? (void)fuse_reply_write(req, size) : ReplyStatus(req, written);
  }
  const uint64_t entries_before = notifier_.EntriesQueued();
  const Caller caller = CallerOf(req);
  Result<Service::Change> written = Service::Change{};
  switch (node.kind) {
    case NodeKind::kCreate:
      written = writes_.WriteCreate(static_cast<uint64_t>(offset), bytes, caller);
      break;
    case NodeKind::kRescan:
      if (Status s = writes_.WriteRescan(bytes, caller); !s.ok()) written = s;
      break;
    case NodeKind::kAttribute:
      written = writes_.Write(node.id, node.attr, static_cast<uint64_t>(offset), bytes, caller);
      break;
    case NodeKind::kFleetRequestCreate: {
      auto made = writes_.WriteRequest(static_cast<uint64_t>(offset), bytes, caller);
      if (!made.ok()) {
        written = made.status();
      } else if (*made) {
        AwaitFleetView();
      }
      break;
    }
    default:
      written = IsFleet(node.kind) ? fleet_tree::ReadOnly("write") : Status::AccessDenied("the file is read-only");
  }
  // The file written is not marked stale: the kernel does it once the write is answered.
  if (written.ok()) Invalidate(written->before, written->after, ino);
  notifier_.AwaitStale();  // the files this changed (error too, if refused) are read afresh
  if (!written.ok()) {
    if (node.kind == NodeKind::kCreate || node.kind == NodeKind::kRescan ||
        node.kind == NodeKind::kFleetRequestCreate) {
      spdlog::warn("refused: {}", written.status().message());
    }
    return ReplyStatus(req, written.status());
  }
  // Names this write made or changed are seen once it returns (unless their
  // folder's lock is held by someone else: then soon after).
  if (notifier_.EntriesQueued() != entries_before) notifier_.Drain();
  // A write that changed no value left its bytes in the page cache with the
  // old mtime (an unfinished document, `echo > attach` when detached, create,
  // rescan): a new mtime makes the kernel drop them before the next read.
  if (node.kind != NodeKind::kAttribute || !written->changed()) kernel_.PagesAreStale(ino);
  fuse_reply_write(req, size);
}

namespace {

// The files poll(2) waits on (watchers.h).
bool Watched(const Node& node) {
  const Attr attr = node.attr;
  return node.kind == NodeKind::kFleetHostStatus ||
         (node.kind == NodeKind::kAttribute &&
          (attr == Attr::kStatus || attr == Attr::kHealth || attr == Attr::kAttach || attr == Attr::kMaintenance));
}

constexpr fuse_ino_t kHostStatusSlot = kFleetHostEntries[0].ino;
static_assert(kFleetHostEntries[0].kind == NodeKind::kFleetHostStatus);

}  // namespace

void Filesystem::Poll(fuse_req_t req, fuse_ino_t ino, fuse_pollhandle* handle) {
  const Node node = Decode(ino);
  constexpr unsigned kReadable = POLLIN | POLLRDNORM;
  if (!Watched(node)) {
    if (handle) fuse_pollhandle_destroy(handle);
    return (void)fuse_reply_poll(req, kReadable);
  }
  const bool exists = node.kind == NodeKind::kAttribute
                          ? service_.FindById(node.id) != nullptr
                          : fleet_ && fleet_->Current()->HostByNumber(static_cast<uint64_t>(node.id)) != nullptr;
  if (!exists) {
    if (handle) fuse_pollhandle_destroy(handle);
    return ReplyErrno(req, ENOENT);
  }
  const bool changed = watchers_.Poll(ino, fuse_req_ctx(req)->pid, handle, Watchers::Clock::now());
  fuse_reply_poll(req, kReadable | (changed ? POLLPRI | POLLERR : 0));
}

// --- what the kernel holds of a change ----------------------------------------

// fleet/ is never cached (fleet_tree.h): only a watched host status is told
// of a change, or of its host gone, and its watchers woken then.
void Filesystem::InvalidateFleet(const FleetView& before, const FleetView& after) {
  for (const FleetHost& was : before.hosts) {
    const fuse_ino_t ino = FleetHostIno(was.number, kHostStatusSlot);
    if (!watchers_.Watching(ino)) continue;
    const FleetHost* host = after.HostByNumber(was.number);
    if (!host || host->status_changes != was.status_changes) notifier_.Stale(ino);
  }
}

// Only what the kernel can hold is invalidated: a new name it was told is
// absent, an old by-name link it holds.
void Filesystem::Invalidate(const Service::Snapshot& before, const Service::Snapshot& after, fuse_ino_t written,
                            std::string_view made) {
  if (before == after) return;  // nothing changed
  if (kernel_.WhatWasTold(kListIno) != 0) notifier_.Stale(kListIno);
  const Accelerator& any = after ? *after : *before;
  for (const AttrInfo& info : Attributes()) {
    const fuse_ino_t ino = AttrIno(any.id, info.attr);
    if (ino == written && !watchers_.Watching(ino)) continue;  // the kernel marks it stale once answered
    const uint64_t told = kernel_.WhatWasTold(ino);
    // A watcher of it is woken once it is marked stale (the Notifier's), so that what it reads is new.
    if (told != 0 && (!after || told != KernelInodes::Fingerprint(info.render(*after)))) notifier_.Stale(ino);
  }
  if (before && after && before->name == after->name) return;
  ++listing_revision_;
  notifier_.Stale(kAcceleratorsIno);
  notifier_.Stale(kByNameIno);
  // The uuid a mkdir makes: the kernel makes that entry from the reply,
  // holding the folder's lock, which a notification would wait for.
  if (!before && negative_.Take(kAcceleratorsIno, after->uuid) && after->uuid != made) {
    notifier_.ForgetEntry(kAcceleratorsIno, after->uuid);
  }
  if (before && kernel_.Holds(LinkIno(before->id))) notifier_.ForgetEntry(kByNameIno, before->name);
  if (after && negative_.Take(kByNameIno, after->name)) notifier_.ForgetEntry(kByNameIno, after->name);
}

}  // namespace cyborgfs::fs
