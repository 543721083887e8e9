#include "entry_lane.h"

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

// One name and one descriptor, as a lane's messages carry them (SCM_RIGHTS).
struct LaneMessage {
  iovec part;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr header{};

  LaneMessage(char* bytes, size_t size) : part{bytes, size} {
    header.msg_iov = &part;
    header.msg_iovlen = 1;
    header.msg_control = control;
    header.msg_controllen = sizeof control;
  }
  LaneMessage(const LaneMessage&) = delete;
  LaneMessage& operator=(const LaneMessage&) = delete;

  void Attach(int fd) {
    cmsghdr* rights = CMSG_FIRSTHDR(&header);
    rights->cmsg_level = SOL_SOCKET;
    rights->cmsg_type = SCM_RIGHTS;
    rights->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(rights), &fd, sizeof fd);
  }
  int Attached() const {  // -1 if none came
    const cmsghdr* rights = CMSG_FIRSTHDR(&header);
    int fd = -1;
    if (rights && rights->cmsg_level == SOL_SOCKET && rights->cmsg_type == SCM_RIGHTS) {
      std::memcpy(&fd, CMSG_DATA(rights), sizeof fd);
    }
    return fd;
  }
};

// The kernel answers ENOENT when it holds nothing by that name: nothing to drop.
void LogFailure(const std::string& name, int result) {
  if (result != 0 && result != -ENOENT) spdlog::warn("cache invalidation (entry {}) failed: errno {}", name, -result);
}

}  // namespace

Status EntryLane::SpawnHelper() {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return Status::IoError(std::string("socketpair: ") + std::strerror(errno));
  }
  // The helper gets nothing but its end of the pair (as stdin); the FUSE
  // device comes with each request, so that it holds the device only while
  // a notification is in flight (a device it held would keep the connection
  // of a daemon killed with -9 open: requests would hang, not fail).
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pair[1], 0);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  const std::string folder = std::to_string(parent_), daemon = std::to_string(getpid());
  char* argv[] = {const_cast<char*>("cyborgfs"), const_cast<char*>(kHelperArgument), const_cast<char*>(folder.c_str()),
                  const_cast<char*>(daemon.c_str()), nullptr};
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
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
  if (Status s = SpawnHelper(); !s.ok()) {
    spdlog::error("entry invalidations of folder {} run in the daemon: {}", parent_, s.message());
  }
  stopping_ = false;
  running_ = true;
  feeder_ = std::thread([this] { Feed(); });
}

int EntryLane::Notify(const std::string& name) {
  if (channel_ < 0) return fuse_lowlevel_notify_inval_entry(session_, parent_, name.data(), name.size());
  LaneMessage message(const_cast<char*>(name.data()), name.size());  // the name, with the FUSE device
  message.Attach(fuse_session_fd(session_));
  if (sendmsg(channel_, &message.header, MSG_NOSIGNAL) != static_cast<ssize_t>(name.size())) return -EPIPE;
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
    LaneMessage message(name, sizeof name - 1);
    const ssize_t n = recvmsg(0, &message.header, MSG_CMSG_CLOEXEC);
    if (n <= 0) return 0;
    const int device = message.Attached();
    name[n] = '\0';
    fuse_notify_inval_entry_out entry{parent, static_cast<uint32_t>(n), 0};
    fuse_out_header header{0, FUSE_NOTIFY_INVAL_ENTRY, 0};
    iovec parts[] = {{&header, sizeof header}, {&entry, sizeof entry}, {name, static_cast<size_t>(n) + 1}};
    header.len = static_cast<uint32_t>(sizeof header + sizeof entry + static_cast<size_t>(n) + 1);
    const int32_t result = device < 0 ? -EBADF : writev(device, parts, 3) < 0 ? -errno : 0;
    if (device >= 0) close(device);
    if (send(0, &result, sizeof result, MSG_NOSIGNAL) != sizeof result) return 0;
  }
}

}  // namespace cyborgfs::fs
