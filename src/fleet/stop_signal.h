// How a fleet thread is told to stop: Stop() sets the flag and makes fd()
// readable, so that a wait on PostgreSQL (Postgres::AwaitNotifications on
// fd()) or a Pause() ends at once. Wake() ends such a wait without stopping;
// the thread Drain()s it before it does what it was woken for.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace cyborgfs::fleet {

class StopSignal {
 public:
  StopSignal() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~StopSignal() {
    if (fd_ >= 0) close(fd_);
  }
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  void Stop() {
    stopping_ = true;
    Wake();
  }
  bool Stopping() const { return stopping_.load(); }
  void Wake() {
    const uint64_t one = 1;
    if (fd_ >= 0) (void)!write(fd_, &one, sizeof one);
  }
  // Takes back the wakes so far (a stop stays signalled).
  void Drain() {
    uint64_t count = 0;
    if (fd_ >= 0) (void)!read(fd_, &count, sizeof count);
    if (stopping_) Wake();
  }
  // Waits `d`, or less if Stop() is called.
  void Pause(std::chrono::milliseconds d) const {
    pollfd stop{fd_, POLLIN, 0};
    (void)poll(&stop, 1, static_cast<int>(d.count()));
  }
  int fd() const { return fd_; }

 private:
  const int fd_;
  std::atomic<bool> stopping_{false};
};

}  // namespace cyborgfs::fleet
