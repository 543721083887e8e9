#include "holders.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

namespace cyborgfs::app {
namespace {

// How long a mount may take to answer statfs before it counts as silent.
constexpr int kAskMilliseconds = 2000;

// The names of the numeric entries of `folder` (pids, tids, descriptors).
std::vector<std::string> Numbers(const std::string& folder) {
  std::vector<std::string> names;
  if (DIR* dir = opendir(folder.c_str())) {
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] >= '0' && entry->d_name[0] <= '9') names.emplace_back(entry->d_name);
    }
    closedir(dir);
  }
  return names;
}

// How /proc names a file in a lock line: major:minor (hex):inode.
std::string LockId(const struct stat& st) {
  char id[64];
  std::snprintf(id, sizeof id, "%02x:%02x:%lu", major(st.st_dev), minor(st.st_dev),
                static_cast<unsigned long>(st.st_ino));
  return id;
}

// The pid /proc/locks names for a flock on `id` (the process that took it), or 0.
pid_t Locker(const std::string& id) {
  std::ifstream locks("/proc/locks");
  for (std::string line; std::getline(locks, line);) {
    std::istringstream words(line);  // 1: FLOCK  ADVISORY  WRITE 28072 fe:00:10952732 0 EOF
    std::string number, kind, mode, access, file;
    pid_t pid = 0;
    if (words >> number >> kind >> mode >> access >> pid >> file && kind == "FLOCK" && file == id) return pid;
  }
  return 0;
}

// Whether a descriptor of `task` (/proc/PID or /proc/PID/task/TID) refers to
// `target` (the file's path as the kernel shows it) and holds the flock `id`.
bool HoldsLock(const std::string& task, const std::string& target, const std::string& id) {
  for (const std::string& fd : Numbers(task + "/fd")) {
    char link[PATH_MAX];
    const ssize_t n = readlink((task + "/fd/" + fd).c_str(), link, sizeof link - 1);
    if (n <= 0) continue;
    const std::string points(link, static_cast<size_t>(n));
    if (points != target && points != target + " (deleted)") continue;
    std::ifstream info(task + "/fdinfo/" + fd);
    for (std::string line; std::getline(info, line);) {
      if (line.rfind("lock:", 0) == 0 && line.find(" FLOCK ") != std::string::npos &&
          line.find(" " + id + " ") != std::string::npos) {
        return true;
      }
    }
  }
  return false;
}

char StateOf(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return 'X';
  const size_t name_end = line.rfind(')');  // pid (comm) state ...
  return name_end == std::string::npos || name_end + 2 >= line.size() ? 'X' : line[name_end + 2];
}

}  // namespace

bool Alive(pid_t pid) {
  const char state = StateOf(pid);
  return state != 'Z' && state != 'X';
}

std::optional<Holder> DatabaseHolder(const std::string& path) {
  struct stat st {};
  char resolved[PATH_MAX];
  if (stat(path.c_str(), &st) != 0 || !realpath(path.c_str(), resolved)) return std::nullopt;
  const std::string id = LockId(st);
  const pid_t locker = Locker(id);
  if (locker == 0) return std::nullopt;  // no lock on it at all
  std::optional<Holder> dying;
  for (const std::string& name : Numbers("/proc")) {
    const pid_t pid = static_cast<pid_t>(std::atol(name.c_str()));
    if (pid == getpid()) continue;
    const std::string process = "/proc/" + name;
    bool holds = HoldsLock(process, resolved, id);
    // A dying process's first thread has given up its descriptors; a stuck one still has them.
    if (!holds && StateOf(pid) == 'Z') {
      for (const std::string& tid : Numbers(process + "/task")) {
        if ((holds = HoldsLock(process + "/task/" + tid, resolved, id))) break;
      }
    }
    if (!holds) continue;
    if (Alive(pid)) return Holder{pid, true};
    dying = Holder{pid, false};
  }
  if (dying) return dying;
  // Locked, and no process we may look into holds it: count it as live.
  if (locker != getpid()) return Holder{locker, true};
  return std::nullopt;
}

MountAnswer AskMount(const std::string& folder) {
  const pid_t child = fork();
  if (child == 0) {
    struct statfs st {};
    _exit(statfs(folder.c_str(), &st) == 0 ? 0 : 1);
  }
  if (child < 0) return MountAnswer::kSilent;
  for (int waited = 0; waited < kAskMilliseconds; waited += 10) {
    int status = 0;
    if (waitpid(child, &status, WNOHANG) == child) {
      return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? MountAnswer::kAnswers : MountAnswer::kGone;
    }
    usleep(10 * 1000);
  }
  kill(child, SIGKILL);  // it ends once the mount's connection is aborted; init reaps it then
  return MountAnswer::kSilent;
}

}  // namespace cyborgfs::app
