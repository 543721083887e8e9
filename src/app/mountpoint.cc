#include "mountpoint.h"

#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "holders.h"

namespace cyborgfs::app {
namespace {

constexpr const char* kMountType = "fuse.cyborgfs";
constexpr const char* kConnections = "/sys/fs/fuse/connections";

// /proc/self/mountinfo writes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      out += static_cast<char>(std::strtol(field.substr(i + 1, 3).c_str(), nullptr, 8));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

struct MountInfo {
  std::string type;    // "tmpfs", "fuse.cyborgfs"
  std::string source;  // for cyborgfs: the database
  std::string device;  // major:minor; a FUSE mount's minor is its connection number
};

// The topmost mount on `folder`, if something is mounted there.
std::optional<MountInfo> MountAt(const std::string& folder) {
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::optional<MountInfo> found;
  for (std::string line; std::getline(mountinfo, line);) {
    // id parent major:minor root mountpoint options [optional...] - type source super
    std::istringstream fields(line);
    std::string id, parent, root, mountpoint, word;
    MountInfo m;
    fields >> id >> parent >> m.device >> root >> mountpoint;
    while (fields >> word && word != "-") {
    }
    if (fields >> m.type >> m.source && Unescape(mountpoint) == folder) {
      m.source = Unescape(m.source);
      found = m;  // later lines are mounted on top
    }
  }
  return found;
}

// Ends the FUSE connection behind `m`: every request waiting on it fails and
// every later access is ENOTCONN. fusectl is mounted if it is not.
void AbortConnection(const MountInfo& m) {
  const std::string connection = m.device.substr(m.device.find(':') + 1);
  if (mount("fusectl", kConnections, "fusectl", 0, nullptr) != 0 && errno != EBUSY) {
    spdlog::warn("cannot mount fusectl on {}: {}", kConnections, std::strerror(errno));
  }
  std::ofstream abort(std::string(kConnections) + "/" + connection + "/abort");
  abort << "1\n";
}

// OK when the daemon behind cyborgfs mount `m` is gone, kBusy while it lives:
// it lives while a live process holds its database (never ours: we hold it),
// or, if no process holds that file, while the mount answers (a daemon whose
// database was moved or deleted under it).
Status CheckDead(const std::string& folder, const MountInfo& m) {
  if (const auto holder = DatabaseHolder(m.source)) {
    if (!holder->alive) return Status::Ok();  // dying: Detach ends its connection
    return Status::Busy("mountpoint " + folder + " is already served by a running cyborgfs (pid " +
                        std::to_string(holder->pid) + ", database " + m.source + ")");
  }
  if (AskMount(folder) == MountAnswer::kAnswers) {
    return Status::Busy("mountpoint " + folder + " is already served by a running cyborgfs (database " + m.source +
                        ", which is no longer at that path: moved or deleted)");
  }
  return Status::Ok();
}

Status Detach(const std::string& folder, const MountInfo& m) {
  AbortConnection(m);
  if (umount2(folder.c_str(), MNT_DETACH) != 0) {
    return Status::Busy("mountpoint " + folder + " holds a dead cyborgfs mount that cannot be unmounted (" +
                        std::strerror(errno) + "): run fusermount3 -u -z " + folder);
  }
  spdlog::warn("cleared the dead cyborgfs mount on {} (database {}): its daemon had died", folder, m.source);
  return Status::Ok();
}

}  // namespace

Result<std::string> AbsoluteMountpoint(const std::string& path) {
  std::filesystem::path p = std::filesystem::absolute(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // a trailing slash
  char parent[PATH_MAX];
  if (!realpath(p.parent_path().c_str(), parent)) {
    return Status::NotFound("mountpoint " + path + ": " + std::strerror(errno));
  }
  const std::string absolute = (std::filesystem::path(parent) / p.filename()).string();
  if (MountAt(absolute)) return absolute;  // never touched: its daemon may never answer
  struct stat st {};
  if (lstat(absolute.c_str(), &st) != 0) return Status::NotFound("mountpoint " + path + ": " + std::strerror(errno));
  char resolved[PATH_MAX];
  if (S_ISLNK(st.st_mode) && realpath(absolute.c_str(), resolved)) return std::string(resolved);
  return absolute;
}

bool EndStuckDaemon(const std::string& database, const std::string& mountpoint) {
  const auto holder = DatabaseHolder(database);
  const auto m = MountAt(mountpoint);
  if (!holder || holder->alive || !m || m->type != kMountType || m->source != database) return false;
  spdlog::warn("the last cyborgfs (pid {}) died stuck on its mount on {}: aborting that mount's connection",
               holder->pid, mountpoint);
  AbortConnection(*m);
  constexpr std::chrono::milliseconds kPatience(5000), kPoll(50);
  for (std::chrono::milliseconds waited(0); waited < kPatience && DatabaseHolder(database); waited += kPoll) {
    std::this_thread::sleep_for(kPoll);
  }
  return true;
}

Status PrepareMountpoint(const std::string& mountpoint) {
  if (const auto m = MountAt(mountpoint)) {
    if (m->type != kMountType) {
      return Status::Busy("mountpoint " + mountpoint + " already has a " + m->type +
                          " filesystem mounted on it; cyborgfs leaves it alone");
    }
    if (Status s = CheckDead(mountpoint, *m); !s.ok()) return s;
    if (Status s = Detach(mountpoint, *m); !s.ok()) return s;
    return PrepareMountpoint(mountpoint);  // what was under it
  }
  struct stat st {};
  if (stat(mountpoint.c_str(), &st) != 0) {
    return Status::NotFound("mountpoint " + mountpoint + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) return Status::Invalid("mountpoint " + mountpoint + ": not a folder");
  return Status::Ok();
}

}  // namespace cyborgfs::app
