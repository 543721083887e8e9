#include "entry_lane.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

extern char** environ;

namespace cyborgfs::fs {
namespace {

constexpr int kHelperFuseFd = 3;  // where the helper finds the FUSE device

// The kernel answers ENOENT when it holds nothing by that name: nothing to drop.
void LogFailure(const std::string& name, int result) {
  if (result != 0 && result != -ENOENT) spdlog::warn("cache invalidation (entry {}) failed: errno {}", name, -result);
}

}  // namespace

Status EntryLane::SpawnHelper(fuse_session* session) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return Status::IoError(std::string("socketpair: ") + std::strerror(errno));
  }
  // A descriptor of the FUSE device above the ones dup2 targets, so that
  // dup2 always makes a copy (which clears close-on-exec).
  const int device = fcntl(fuse_session_fd(session), F_DUPFD_CLOEXEC, 10);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pair[1], 0);
  posix_spawn_file_actions_adddup2(&actions, device, kHelperFuseFd);
  posix_spawn_file_actions_addclosefrom_np(&actions, kHelperFuseFd + 1);
  const std::string folder = std::to_string(parent_), daemon = std::to_string(getpid());
  char* argv[] = {const_cast<char*>("cyborgfs"), const_cast<char*>(kHelperArgument), const_cast<char*>(folder.c_str()),
                  const_cast<char*>(daemon.c_str()), nullptr};
  pid_t pid = -1;
  const int spawned = device < 0 ? errno : posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (device >= 0) close(device);
  close(pair[1]);
  if (spawned != 0) {
    close(pair[0]);
    return Status::IoError(std::string("cannot start the helper: ") + std::strerror(spawned));
  }
  channel_ = pair[0];
  helper_ = pid;
  return Status::Ok();
}

void EntryLane::Start(fuse_session* session) {
  std::lock_guard lock(mu_);
  if (running_) return;
  session_ = session;
  if (Status s = SpawnHelper(session); !s.ok()) {
    spdlog::error("entry invalidations of folder {} run in the daemon: {}", parent_, s.message());
  }
  stopping_ = false;
  running_ = true;
  feeder_ = std::thread([this] { Feed(); });
}

int EntryLane::Notify(const std::string& name) {
  if (channel_ < 0) return fuse_lowlevel_notify_inval_entry(session_, parent_, name.data(), name.size());
  if (send(channel_, name.data(), name.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(name.size())) return -EPIPE;
  int32_t result = 0;
  if (recv(channel_, &result, sizeof result, 0) != sizeof result) return -EPIPE;
  return result;
}

void EntryLane::Feed() {
  std::unique_lock lock(mu_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || !names_.empty(); });
    if (names_.empty()) return;  // stopping, with all done
    const std::string name = names_.front();
    in_flight_ = true;
    in_flight_since_ = std::chrono::steady_clock::now();
    lock.unlock();  // the kernel may wait: hold nothing of ours
    const int result = Notify(name);
    lock.lock();
    in_flight_ = false;
    if (result == -EPIPE) {  // the helper is gone (or Stop shut the channel): nothing more can be done
      if (!stopping_) spdlog::error("the entry invalidation helper of folder {} is gone", parent_);
      done_ += names_.size();
      names_.clear();
      changed_.notify_all();
      if (stopping_) return;
      continue;
    }
    LogFailure(name, result);
    names_.pop_front();
    ++done_;
    changed_.notify_all();
  }
}

void EntryLane::Forget(std::string name) {
  {
    std::lock_guard lock(mu_);
    if (!running_ || stopping_) return;
    names_.push_back(std::move(name));
    ++queued_;
  }
  changed_.notify_all();
}

bool EntryLane::Stuck() const {
  std::lock_guard lock(mu_);
  return in_flight_ && std::chrono::steady_clock::now() - in_flight_since_ > kStuckAfter;
}

uint64_t EntryLane::Queued() const {
  std::lock_guard lock(mu_);
  return queued_;
}

bool EntryLane::Drain(std::chrono::milliseconds limit) {
  std::unique_lock lock(mu_);
  const uint64_t target = queued_;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (done_ >= target) return true;
    if (in_flight_ && std::chrono::steady_clock::now() - in_flight_since_ > kStuckAfter) return false;
    const auto next_check = std::min(deadline, std::chrono::steady_clock::now() + kStuckAfter);
    if (changed_.wait_until(lock, next_check) == std::cv_status::timeout &&
        std::chrono::steady_clock::now() >= deadline) {
      return done_ >= target;
    }
  }
}

void EntryLane::Stop(std::chrono::milliseconds limit) {
  {
    std::lock_guard lock(mu_);
    if (!running_) return;
  }
  if (!Drain(limit)) spdlog::warn("entry invalidations of folder {} left undone: a reader holds its lock", parent_);
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  // Ends a wait for the helper's answer; the helper reads the end and exits,
  // or, stuck in the kernel, dies as soon as the kernel lets it go.
  if (channel_ >= 0) shutdown(channel_, SHUT_RDWR);
  if (feeder_.joinable()) feeder_.join();
  if (helper_ > 0) {
    kill(helper_, SIGKILL);
    for (int i = 0; i < 20 && waitpid(helper_, nullptr, WNOHANG) == 0; ++i) usleep(5000);
    helper_ = -1;
  }
  if (channel_ >= 0) close(channel_);
  channel_ = -1;
  std::lock_guard lock(mu_);
  running_ = false;
}

int RunEntryLaneHelper(int argc, char** argv) {
  if (argc != 4) return 2;
  const uint64_t parent = std::strtoull(argv[2], nullptr, 10);
  const pid_t daemon = static_cast<pid_t>(std::atoi(argv[3]));
  prctl(PR_SET_NAME, "cyborgfs-lane");
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != daemon) return 1;  // it died before we could ask to die with it
  char name[1024];                    // a name is at most 255 bytes
  for (;;) {
    const ssize_t n = recv(0, name, sizeof name - 1, 0);
    if (n <= 0) return 0;
    name[n] = '\0';
    fuse_notify_inval_entry_out entry{parent, static_cast<uint32_t>(n), 0};
    fuse_out_header header{0, FUSE_NOTIFY_INVAL_ENTRY, 0};
    iovec parts[] = {{&header, sizeof header}, {&entry, sizeof entry}, {name, static_cast<size_t>(n) + 1}};
    header.len = static_cast<uint32_t>(sizeof header + sizeof entry + static_cast<size_t>(n) + 1);
    const int32_t result = writev(kHelperFuseFd, parts, 3) < 0 ? -errno : 0;
    if (send(0, &result, sizeof result, MSG_NOSIGNAL) != sizeof result) return 0;
  }
}

}  // namespace cyborgfs::fs
