// The FUSE adapter: turns low-level FUSE requests into Service and
// ScratchSpace calls.
//
// Each callback unpacks the request, asks the core, and replies; the rules of
// the tree live in the Service, the attribute table and the ScratchSpace, the
// errno mapping in errno_map.cc.
//
// Caching: the kernel answers most reads itself. Entries, attributes and
// negative entries are cached for kCacheSeconds, opens and closes never reach
// the daemon (open and opendir answer ENOSYS: FUSE_CAP_NO_OPEN_SUPPORT and
// FUSE_CAP_NO_OPENDIR_SUPPORT), file content is kept in the page cache,
// symlink targets and folder listings too (a folder opened without the
// daemon caches its listing). A warm stat or read costs no request. What keeps it
// fresh: every change reaches Invalidate() (from the Change a verb returns,
// or from the Service's listener for the others) or a
// request of the kernel's own, and the Notifier's threads invalidate what the
// kernel holds; a request that changed something waits for its attributes
// to be marked stale before it replies (entries too, for a WRITE); every
// value has its own mtime, so stale pages are
// dropped by the kernel at the next stat or read (AUTO_INVAL_DATA). READs
// are answered with the current content.
// Scratch files, `stats`, `drivers` and fleet/ are not cached (timeouts 0);
// each reader reads one rendering of those that change by themselves
// (renderings.h).
// `accelerators.json` (the body of GET /accelerators) is marked stale at
// every change of any accelerator; a new revision is a new mtime.
//
// Writes are per file and offset, not per open file (see the README): the
// daemon never learns of opens and closes.
//
// Writes go through FileWrites (the write(2) protocol over the Service's
// verbs), and each change a request makes comes back from the verb: the
// adapter invalidates what the kernel holds of it. The Service's listener
// tells of the others (rescans, other front ends).
//
// fleet/requests/create is written as create is (FileWrites); a request
// made there, or deleted by rmdir, is in the fleet view once the call
// returns (FleetBoard::AwaitRead).
//
// In an accelerator folder, a name that is not a listed file is a scratch
// file (see scratch.h); rename(2) of a scratch file over a listed file
// commits its content through FileWrites::Replace. The callbacks of the tree
// are in filesystem.cc, those only scratch files have in scratch_files.cc.
//
// Thread safety: the callbacks run on libfuse's worker threads concurrently;
// the listener on any thread that changes the Service.
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <string>

#include "cyborgfs/accelerator_requests.h"
#include "cyborgfs/fleet_view.h"
#include "cyborgfs/service.h"
#include "file_writes.h"
#include "fleet_tree.h"
#include "kernel_inodes.h"
#include "nodes.h"
#include "notifier.h"
#include "renderings.h"
#include "request_counters.h"
#include "scratch.h"
#include "watchers.h"

namespace cyborgfs::fs {

// How long the kernel may keep entries and attributes of what only the
// daemon changes (it is told of every change).
inline constexpr double kCacheSeconds = 3600;
// How long it may keep them in a folder whose names cannot be invalidated
// now (a reader holds the folder's lock: Notifier::Stuck).
inline constexpr double kStuckCacheSeconds = 1;

class Filesystem {
 public:
  // Registers itself as `service`'s listener. Every file and folder of the
  // tree is owned by the daemon's user and by `admin_group`, whose members
  // may do what the owner may (group bits = owner bits); others may read.
  // With default_permissions the kernel enforces this at open(2), mkdir(2),
  // rename(2), ... for every caller (see the README, "Who may change what").
  // Scratch files hold `scratch_limit` bytes at most, all together.
  // With `fleet` (--fleet), MOUNT/fleet/ shows its current view (fleet_tree.h),
  // and fleet/requests/ makes and deletes `requests`.
  Filesystem(Service& service, gid_t admin_group, size_t scratch_limit = kDefaultScratchLimit,
             FleetBoard* fleet = nullptr, AcceleratorRequests* requests = nullptr);

  // The operation table to pass to fuse_session_new, with `this` as userdata.
  static const fuse_lowlevel_ops& Operations();

  // The kernel's caches of `session` exist from Mounted() (call it after
  // fuse_daemonize: it starts the notifier's threads) to Unmounting().
  void Mounted(fuse_session* session) { notifier_.Start(session); }
  void Unmounting() { notifier_.Stop(); }

  // Returns once what the kernel holds of every change made so far is
  // invalidated (or the notifier has waited its bound): a front end calls it
  // after a change, before it replies, so that the change is seen through
  // the mount at once. It must not be called with an op lock held.
  void Settle() {
    notifier_.AwaitStale();
    notifier_.Drain();
  }

  // Called by the callbacks (public so the C callbacks can reach them).
  // Counts a request about inode `about` (0: none in particular). Those
  // about `stats` are not counted: reading it leaves what it measures alone.
  // The requests answered so far, per operation (the stats file's).
  Json RequestCounts() const { return counters_.Counts(); }
  void Count(Op op, fuse_ino_t about) {
    if (about != kStatsIno) counters_.Count(op);
  }
  void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void GetAttr(fuse_req_t req, fuse_ino_t ino);
  void SetAttr(fuse_req_t req, fuse_ino_t ino, const struct stat& attr, int to_set);
  void Forget(fuse_ino_t ino, uint64_t count) { kernel_.Forget(ino, count); }
  void ReadLink(fuse_req_t req, fuse_ino_t ino);
  void MakeDir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  void MakeNode(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  void RemoveDir(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent, const char* new_name,
              unsigned flags);
  void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset);
  void Write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t offset, const fuse_file_info* fi);
  void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, bool plus);
  // poll(2): on an accelerator's status, health, attach and maintenance, as
  // sysfs_notify (watchers.h); any other file is always readable.
  void Poll(fuse_req_t req, fuse_ino_t ino, fuse_pollhandle* handle);

 private:
  // What an attribute reply tells the kernel of an inode.
  struct Described {
    struct stat st {};
    uint64_t told = 0;  // a file's KernelInodes::Fingerprint; 0 for folders and links
    double timeout = kCacheSeconds;
  };
  // `reader` is the thread that asked (a file that changes by itself is
  // answered from its rendering: renderings.h).
  Result<Described> Describe(fuse_ino_t ino, pid_t reader) const;
  Described DescribeScratch(fuse_ino_t ino, const ScratchFile& file) const;
  // What fleet/ shows for `node` in the current view (kNotFound without --fleet).
  Result<fleet_tree::Item> FleetItem(const Node& node) const;
  // The content of a file or a link that changes only when told (no scratch file).
  Result<std::string> Content(fuse_ino_t ino) const;
  // A file that changes by itself, as `reader` is answered (Renderings::For);
  // Render() renders it now.
  Result<Renderings::Held> Rendered(fuse_ino_t ino, pid_t reader, Renderings::Ask ask) const;
  Result<Renderings::Rendering> Render(fuse_ino_t ino) const;
  void ReplyAttr(fuse_req_t req, fuse_ino_t ino);
  // Fills `entry` for `ino` (a scratch file's if `scratch` is set), as
  // request `req` is answered, counting the kernel's new reference to it.
  Status MakeEntry(fuse_req_t req, fuse_ino_t ino, fuse_entry_param& entry,
                   const ScratchSpace::Entry& scratch = nullptr);
  // `parent` is the folder the entry is in, whose cache policy it follows.
  void ReplyEntry(fuse_req_t req, fuse_ino_t parent, fuse_ino_t ino);
  void ReplyNoEntry(fuse_req_t req, fuse_ino_t parent, bool cacheable);
  // How long the kernel may keep entries of folder `parent`.
  double EntryTimeout(fuse_ino_t parent) const;
  void ReplyScratchEntry(fuse_req_t req, const ScratchSpace::Entry& entry);
  // A listed name: a fixed folder or file, an accelerator, a link, a file of
  // an accelerator folder. These can be neither removed nor renamed.
  bool Listed(const Node& parent, const char* name) const;
  // A new scratch file or folder `name` in folder `parent`, owned by the caller.
  Result<ScratchSpace::Entry> MakeScratch(fuse_req_t req, fuse_ino_t parent, const char* name, bool is_folder,
                                          mode_t mode);
  Status CommitScratch(const Node& from, const char* name, const Node& to, const char* new_name, unsigned flags,
                       const Caller& caller);
  void SetScratchAttr(fuse_req_t req, fuse_ino_t ino, const struct stat& attr, int to_set);
  // Invalidates what the kernel holds of a change from `before` to `after`
  // (a verb's Change, or one the Service's listener tells of): but the file
  // `written` (the kernel marks it stale itself once its write is answered)
  // and the uuid `made` by a mkdir (the kernel makes that entry itself).
  void Invalidate(const Service::Snapshot& before, const Service::Snapshot& after, fuse_ino_t written = 0,
                  std::string_view made = {});
  // What a new fleet view changed that the kernel must be told of: the
  // status of a host someone watches (the FleetBoard's listener).
  void InvalidateFleet(const FleetView& before, const FleetView& after);

  // Whether the root lists `entry` (fleet/ only with a fleet).
  bool Shown(const RootEntry& entry) const { return entry.kind != NodeKind::kFleet || fleet_; }

  // After a request is made or deleted: returns once the view has it
  // (FleetBoard::AwaitRead), kAwaitView at most.
  void AwaitFleetView();
  static constexpr std::chrono::milliseconds kAwaitView{2000};
  // rmdir fleet/requests/<uuid>.
  Status RemoveRequest(const char* name, const Caller& who);

  Service& service_;
  FleetBoard* const fleet_;
  AcceleratorRequests* const requests_;
  FileWrites writes_;
  ScratchSpace scratch_;
  KernelInodes kernel_;
  mutable Renderings renderings_;
  NegativeEntries negative_{std::chrono::seconds(static_cast<int>(kCacheSeconds))};
  Notifier notifier_;
  RequestCounters counters_;
  mutable Watchers watchers_;  // the stats file's count sweeps it
  const uid_t uid_;
  const gid_t admin_group_;
  const time_t mounted_at_;
  // +1 whenever accelerators/ or by-name/ change: their mtime (nanoseconds),
  // so the kernel drops its cached listing.
  std::atomic<uint64_t> listing_revision_{0};
};

}  // namespace cyborgfs::fs
