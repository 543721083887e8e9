// Telling the kernel to forget names of one folder, from a process of its own.
//
// fuse_lowlevel_notify_inval_entry takes the folder's lock in the kernel,
// and waits for it uninterruptibly: a reader that holds that lock for ever
// (a getdents64 into a buffer whose page fault never completes, which any
// user can arrange) would hold the notifying thread for ever, and a process
// with a thread stuck so cannot exit. So each folder whose names change
// (accelerators/, by-name/) has a lane: a helper process (this binary,
// started with kHelperArgument) that writes the notifications to the FUSE
// device, one at a time, and a thread here that feeds it. A stuck helper
// holds up only its folder's names: other requests go on, Stuck() says so,
// what is queued meanwhile is done once the folder's lock comes free, and
// Stop() never waits for it (the helper dies with the daemon, PR_SET_PDEATHSIG,
// once the kernel lets it go).
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "cyborgfs/status.h"

namespace cyborgfs::fs {

class EntryLane {
 public:
  // The argument that makes the daemon's binary a lane's helper (main.cc).
  static constexpr const char* kHelperArgument = "--internal-entry-lane";
  // How long a notification may take before its lane counts as stuck.
  static constexpr std::chrono::milliseconds kStuckAfter{200};

  explicit EntryLane(fuse_ino_t parent) : parent_(parent) {}
  EntryLane(const EntryLane&) = delete;
  EntryLane& operator=(const EntryLane&) = delete;
  ~EntryLane() { Stop(); }

  // Starts the helper on `session`'s FUSE device. If it cannot be started,
  // the lane's thread notifies the kernel itself (and may get stuck so).
  void Start(fuse_session* session);
  // Finishes what is queued (waiting `limit` at most), then stops.
  void Stop(std::chrono::milliseconds limit = std::chrono::milliseconds(1000));

  // Queues "forget `name` in the folder"; nothing happens before Start().
  void Forget(std::string name);
  // Waits until what was queued so far is done, `limit` at most; at once if
  // the lane is stuck. Whether it was done.
  bool Drain(std::chrono::milliseconds limit);
  // A notification has been in flight for longer than kStuckAfter.
  bool Stuck() const;
  uint64_t Queued() const;  // notifications ever queued

 private:
  void Feed();  // the thread that hands the queue to the helper
  // One notification, through the helper (or ourselves without one): 0 or
  // the kernel's -errno; -EPIPE when the helper is gone.
  int Notify(const std::string& name);
  Status SpawnHelper();

  const fuse_ino_t parent_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::deque<std::string> names_;                            // REQUIRES: mu_
  uint64_t queued_ = 0;                                      // REQUIRES: mu_
  uint64_t done_ = 0;                                        // REQUIRES: mu_
  bool stopping_ = false;                                    // REQUIRES: mu_
  bool running_ = false;                                     // REQUIRES: mu_
  std::chrono::steady_clock::time_point in_flight_since_{};  // REQUIRES: mu_; while sending
  bool in_flight_ = false;                                   // REQUIRES: mu_
  fuse_session* session_ = nullptr;
  int channel_ = -1;  // our end of the socket pair to the helper
  pid_t helper_ = -1;
  std::thread feeder_;
};

// The helper's main (argv: binary, kHelperArgument, folder inode, daemon
// pid): reads names from fd 0, each with a descriptor of the FUSE device
// (SCM_RIGHTS), writes it there as a FUSE_NOTIFY_INVAL_ENTRY of the folder,
// closes the device, and answers with the kernel's result (0 or -errno),
// until fd 0 ends. It exits at once if the daemon is gone, and is killed
// when the daemon dies.
int RunEntryLaneHelper(int argc, char** argv);

}  // namespace cyborgfs::fs
