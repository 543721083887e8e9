// Scratch files: the private temporary files and folders that editors and
// configuration tools make beside the file they replace (sed's `sedXXXXXX`,
// rsync's `.spec.XXXXXX`, Ansible's `.ansible_tmp*`, Puppet's `<name>.lock`
// folder), so that their final rename(2) can commit the content.
//
// They live in memory only, in an accelerator's folder, under any name that
// is not one of its listed files (the caller keeps those apart); they are
// never stored and are gone after a restart. A scratch folder holds nothing:
// it exists to be made and removed (a lock). Bounds: kMaxScratchBytes per
// file (kTooLarge), kMaxScratchEntries per accelerator folder (kNoSpace),
// and a ScratchBudget for the bytes of all of them together (kNoSpace),
// which counts a file until its last user lets go of it (an unlinked file
// kept open holds its bytes).
//
// Thread safety: all methods may be called concurrently. A ScratchFile stays
// usable through its shared_ptr after it was removed from its folder, as an
// unlinked file stays usable through an open descriptor.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "cyborgfs/status.h"

namespace cyborgfs {

inline constexpr size_t kMaxScratchBytes = 1024 * 1024;
inline constexpr size_t kMaxScratchEntries = 64;
inline constexpr size_t kDefaultScratchLimit = 64 * 1024 * 1024;

// The bytes all scratch files hold together, against one limit.
class ScratchBudget {
 public:
  explicit ScratchBudget(size_t limit) : limit_(limit) {}
  // Takes `bytes` more; kNoSpace, taking nothing, past the limit.
  Status Take(size_t bytes);
  void Give(size_t bytes) { used_.fetch_sub(bytes); }
  size_t used() const { return used_.load(); }

 private:
  const size_t limit_;
  std::atomic<size_t> used_{0};
};

// What stat(2) shows of a scratch file besides its size.
struct ScratchMeta {
  mode_t mode = 0600;  // permission bits only
  uid_t uid = 0;
  gid_t gid = 0;
  timespec atime{}, mtime{}, ctime{};
};

class ScratchFile {
 public:
  ScratchFile(uint64_t number, bool is_folder, ScratchMeta meta, std::shared_ptr<ScratchBudget> budget);
  ~ScratchFile();
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  uint64_t number() const { return number_; }  // unique for the daemon's life
  bool is_folder() const { return is_folder_; }
  bool linked() const;  // false once unlinked, renamed over, or committed

  ScratchMeta meta() const;
  uint64_t size() const;
  std::string content() const;

  // Up to `size` bytes from `offset`.
  std::string Read(uint64_t offset, size_t size) const;
  // Regular-file semantics: a write past the end leaves zeros between.
  // kTooLarge when the file would exceed kMaxScratchBytes, kNoSpace when all
  // scratch files would hold more than their budget.
  Status Write(uint64_t offset, std::string_view data);
  Status Append(std::string_view data);  // O_APPEND: at the end, atomically
  Status Truncate(uint64_t size);
  void SetMode(mode_t mode);
  void SetOwner(uid_t uid, gid_t gid);
  void SetTimes(const timespec* atime, const timespec* mtime);  // nullptr: keep

 private:
  friend class ScratchSpace;
  // REQUIRES: mu_ held.
  Status WriteLocked(uint64_t offset, std::string_view data);
  Status Resize(uint64_t size);  // takes from or gives back to the budget
  void Touch();

  const uint64_t number_;
  const bool is_folder_;
  const std::shared_ptr<ScratchBudget> budget_;
  mutable std::mutex mu_;
  std::string content_;  // REQUIRES: mu_
  ScratchMeta meta_;     // REQUIRES: mu_
  bool linked_ = true;   // REQUIRES: mu_
};

class ScratchSpace {
 public:
  using Entry = std::shared_ptr<ScratchFile>;

  // All its files together hold at most `limit` bytes.
  explicit ScratchSpace(size_t limit = kDefaultScratchLimit) : budget_(std::make_shared<ScratchBudget>(limit)) {}
  size_t bytes() const { return budget_->used(); }  // held by all its files, linked or not

  // Makes scratch `name` in accelerator folder `folder`. kExists if the name
  // is taken, kNoSpace if the folder is full.
  Result<Entry> Create(int64_t folder, const std::string& name, bool is_folder, const ScratchMeta& meta);

  Entry Find(int64_t folder, std::string_view name) const;  // nullptr when none
  std::vector<std::pair<std::string, Entry>> List(int64_t folder) const;
  bool Empty(int64_t folder) const;

  // unlink(2) (is_folder false) or rmdir(2): kNotFound, kIsFolder, kNotFolder.
  Status Remove(int64_t folder, const std::string& name, bool is_folder);

  // Forgets every scratch file of a folder that no longer exists.
  void DropFolder(int64_t folder);

  // rename(2) of scratch to scratch, within or across accelerator folders.
  // An existing target is replaced unless `no_replace` (kExists); a file
  // cannot replace a folder (kIsFolder) nor a folder a file (kNotFolder).
  Status Move(int64_t from_folder, const std::string& from, int64_t to_folder, const std::string& to, bool no_replace);

  // rename(2) of scratch `name` over a listed file: calls `apply` with the
  // scratch content (as it is at the call; no lock is held while `apply`
  // runs, which may wait for a driver) and removes the scratch when `apply`
  // succeeds; when it fails the scratch stays and its Status is returned.
  // kNotFound if there is no such scratch; a folder is kNotFolder.
  Status Commit(int64_t folder, const std::string& name, const std::function<Status(const std::string&)>& apply);

 private:
  using Folder = std::map<std::string, Entry, std::less<>>;
  // REQUIRES: mu_ held.
  Result<Entry> Lookup(int64_t folder, std::string_view name) const;
  void Unlink(int64_t folder, const std::string& name);
  static void MarkUnlinked(ScratchFile& file);  // it is in no folder any more

  const std::shared_ptr<ScratchBudget> budget_;
  mutable std::mutex mu_;
  std::map<int64_t, Folder> folders_;  // REQUIRES: mu_
  uint64_t last_number_ = 0;           // REQUIRES: mu_
};

}  // namespace cyborgfs
