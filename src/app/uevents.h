// Hotplug at once: the kernel's uevents (netlink NETLINK_KOBJECT_UEVENT)
// of PCI devices (add, remove, bind, unbind, change, ...) start a rescan,
// besides the periodic one, which still covers an event missed.
//
// Debounced: the first event of a burst starts a wait of kDebounce, the
// events that come meanwhile join it, then one rescan runs (a driver
// probing a card sends several). Each rescan is logged with the event that
// caused it and how long after it the rescan ended ("uevent: pci change
// 0000:3b:00.0: rescanned 23 ms after it").
//
// Unavailable (the socket refused, no permission): said once in the log,
// and the periodic rescan is all there is.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "cyborgfs/service.h"

namespace cyborgfs::app {

class UeventListener {
 public:
  static constexpr std::chrono::milliseconds kDebounce{20};

  explicit UeventListener(Service& service, std::chrono::seconds periodic) : service_(service), periodic_(periodic) {}
  ~UeventListener() { Stop(); }
  UeventListener(const UeventListener&) = delete;
  UeventListener& operator=(const UeventListener&) = delete;

  // Opens the socket and starts the thread (after fuse_daemonize); false,
  // said in the log, if the kernel's events cannot be had.
  bool Start();
  void Stop();

 private:
  void Run();

  Service& service_;
  const std::chrono::seconds periodic_;
  int socket_ = -1;
  int stop_fd_ = -1;
  std::thread thread_;
};

}  // namespace cyborgfs::app
