#include "scratch.h"

#include <algorithm>

namespace cyborgfs {
namespace {

timespec Now() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return now;
}

Status TooLarge(uint64_t size) {
  return Status::TooLarge("scratch file of " + std::to_string(size) + " bytes, at most " +
                          std::to_string(kMaxScratchBytes) + " are allowed");
}

Status FolderFull() {
  return Status::NoSpace("a folder holds at most " + std::to_string(kMaxScratchEntries) + " scratch files");
}

}  // namespace

Status ScratchBudget::Take(size_t bytes) {
  size_t used = used_.load();
  do {
    if (used + bytes > limit_) {
      return Status::NoSpace("scratch files would hold " + std::to_string(used + bytes) + " bytes in all, at most " +
                             std::to_string(limit_) + " are allowed (--scratch-limit)");
    }
  } while (!used_.compare_exchange_weak(used, used + bytes));
  return Status::Ok();
}

// --- ScratchFile ---------------------------------------------------------------

ScratchFile::ScratchFile(uint64_t number, bool is_folder, ScratchMeta meta, std::shared_ptr<ScratchBudget> budget)
    : number_(number), is_folder_(is_folder), budget_(std::move(budget)), meta_(meta) {}

ScratchFile::~ScratchFile() { budget_->Give(content_.size()); }

Status ScratchFile::Resize(uint64_t size) {
  if (size > content_.size()) {
    if (Status s = budget_->Take(size - content_.size()); !s.ok()) return s;
  } else {
    budget_->Give(content_.size() - size);
  }
  content_.resize(size, '\0');
  if (content_.capacity() > 2 * content_.size() + 4096) content_.shrink_to_fit();  // give the memory back too
  return Status::Ok();
}

bool ScratchFile::linked() const {
  std::lock_guard lock(mu_);
  return linked_;
}

ScratchMeta ScratchFile::meta() const {
  std::lock_guard lock(mu_);
  return meta_;
}

uint64_t ScratchFile::size() const {
  std::lock_guard lock(mu_);
  return content_.size();
}

std::string ScratchFile::content() const {
  std::lock_guard lock(mu_);
  return content_;
}

std::string ScratchFile::Read(uint64_t offset, size_t size) const {
  std::lock_guard lock(mu_);
  if (offset >= content_.size()) return {};
  return content_.substr(offset, size);
}

Status ScratchFile::Write(uint64_t offset, std::string_view data) {
  std::lock_guard lock(mu_);
  return WriteLocked(offset, data);
}

Status ScratchFile::Append(std::string_view data) {
  std::lock_guard lock(mu_);
  return WriteLocked(content_.size(), data);
}

Status ScratchFile::WriteLocked(uint64_t offset, std::string_view data) {
  const uint64_t end = offset + data.size();
  if (end > kMaxScratchBytes || end < offset) return TooLarge(end);
  if (end > content_.size()) {
    if (Status s = Resize(end); !s.ok()) return s;
  }
  std::copy(data.begin(), data.end(), content_.begin() + static_cast<std::ptrdiff_t>(offset));
  Touch();
  return Status::Ok();
}

Status ScratchFile::Truncate(uint64_t size) {
  std::lock_guard lock(mu_);
  if (size > kMaxScratchBytes) return TooLarge(size);
  if (Status s = Resize(size); !s.ok()) return s;
  Touch();
  return Status::Ok();
}

void ScratchFile::SetMode(mode_t mode) {
  std::lock_guard lock(mu_);
  meta_.mode = mode & 07777;
  meta_.ctime = Now();
}

void ScratchFile::SetOwner(uid_t uid, gid_t gid) {
  std::lock_guard lock(mu_);
  if (uid != static_cast<uid_t>(-1)) meta_.uid = uid;
  if (gid != static_cast<gid_t>(-1)) meta_.gid = gid;
  meta_.ctime = Now();
}

void ScratchFile::SetTimes(const timespec* atime, const timespec* mtime) {
  std::lock_guard lock(mu_);
  if (atime) meta_.atime = *atime;
  if (mtime) meta_.mtime = *mtime;
  meta_.ctime = Now();
}

void ScratchFile::Touch() { meta_.mtime = meta_.ctime = Now(); }

void ScratchSpace::MarkUnlinked(ScratchFile& file) {
  std::lock_guard lock(file.mu_);
  file.linked_ = false;
}

// --- ScratchSpace --------------------------------------------------------------

Result<ScratchSpace::Entry> ScratchSpace::Create(int64_t folder, const std::string& name, bool is_folder,
                                                 const ScratchMeta& meta) {
  std::lock_guard lock(mu_);
  Folder& entries = folders_[folder];
  if (entries.count(name)) return Status::Exists(name + " exists");
  if (entries.size() >= kMaxScratchEntries) return FolderFull();
  ScratchMeta stamped = meta;
  stamped.atime = stamped.mtime = stamped.ctime = Now();
  auto entry = std::make_shared<ScratchFile>(++last_number_, is_folder, stamped, budget_);
  entries.emplace(name, entry);
  return entry;
}

Result<ScratchSpace::Entry> ScratchSpace::Lookup(int64_t folder, std::string_view name) const {
  auto f = folders_.find(folder);
  if (f == folders_.end()) return Status::NotFound(std::string(name) + ": no such scratch file");
  auto it = f->second.find(name);
  if (it == f->second.end()) return Status::NotFound(std::string(name) + ": no such scratch file");
  return it->second;
}

ScratchSpace::Entry ScratchSpace::Find(int64_t folder, std::string_view name) const {
  std::lock_guard lock(mu_);
  auto found = Lookup(folder, name);
  return found.ok() ? *found : nullptr;
}

std::vector<std::pair<std::string, ScratchSpace::Entry>> ScratchSpace::List(int64_t folder) const {
  std::lock_guard lock(mu_);
  auto f = folders_.find(folder);
  if (f == folders_.end()) return {};
  return {f->second.begin(), f->second.end()};
}

bool ScratchSpace::Empty(int64_t folder) const {
  std::lock_guard lock(mu_);
  auto f = folders_.find(folder);
  return f == folders_.end() || f->second.empty();
}

void ScratchSpace::Unlink(int64_t folder, const std::string& name) {
  Folder& entries = folders_[folder];
  auto it = entries.find(name);
  MarkUnlinked(*it->second);
  entries.erase(it);
  if (entries.empty()) folders_.erase(folder);
}

Status ScratchSpace::Remove(int64_t folder, const std::string& name, bool is_folder) {
  std::lock_guard lock(mu_);
  auto found = Lookup(folder, name);
  if (!found.ok()) return found.status();
  if ((*found)->is_folder() != is_folder) {
    return is_folder ? Status::NotFolder(name + " is a file") : Status::IsFolder(name + " is a folder");
  }
  Unlink(folder, name);
  return Status::Ok();
}

void ScratchSpace::DropFolder(int64_t folder) {
  std::lock_guard lock(mu_);
  auto f = folders_.find(folder);
  if (f == folders_.end()) return;
  for (auto& [name, entry] : f->second) MarkUnlinked(*entry);
  folders_.erase(f);
}

Status ScratchSpace::Move(int64_t from_folder, const std::string& from, int64_t to_folder, const std::string& to,
                          bool no_replace) {
  std::lock_guard lock(mu_);
  auto source = Lookup(from_folder, from);
  if (!source.ok()) return source.status();
  if (from_folder == to_folder && from == to) return Status::Ok();
  auto target = Lookup(to_folder, to);
  if (target.ok()) {
    if (no_replace) return Status::Exists(to + " exists");
    if ((*target)->is_folder() && !(*source)->is_folder()) return Status::IsFolder(to + " is a folder");
    if (!(*target)->is_folder() && (*source)->is_folder()) return Status::NotFolder(to + " is a file");
    Unlink(to_folder, to);
  } else if (from_folder != to_folder && folders_[to_folder].size() >= kMaxScratchEntries) {
    return FolderFull();
  }
  Entry moved = *source;
  folders_[from_folder].erase(from);
  if (folders_[from_folder].empty()) folders_.erase(from_folder);
  folders_[to_folder].emplace(to, std::move(moved));
  return Status::Ok();
}

Status ScratchSpace::Commit(int64_t folder, const std::string& name,
                            const std::function<Status(const std::string&)>& apply) {
  Entry entry;
  {
    std::lock_guard lock(mu_);
    auto found = Lookup(folder, name);
    if (!found.ok()) return found.status();
    if ((*found)->is_folder()) return Status::NotFolder(name + " is a folder, the target a file");
    entry = *found;
  }
  if (Status s = apply(entry->content()); !s.ok()) return s;
  std::lock_guard lock(mu_);
  auto still = Lookup(folder, name);
  if (still.ok() && *still == entry) Unlink(folder, name);
  return Status::Ok();
}

}  // namespace cyborgfs
