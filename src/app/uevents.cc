#include "uevents.h"

#include <linux/netlink.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>

namespace cyborgfs::app {
namespace {

// The PCI event in one uevent message ("ACTION@DEVPATH\0KEY=VALUE\0..."):
// "pci <action> <address>", or "" for another subsystem's.
std::string PciEvent(const char* data, size_t size) {
  std::string_view action, subsystem, slot;
  for (size_t at = 0; at < size;) {
    std::string_view field(data + at, strnlen(data + at, size - at));
    at += field.size() + 1;
    if (field.rfind("ACTION=", 0) == 0) action = field.substr(7);
    if (field.rfind("SUBSYSTEM=", 0) == 0) subsystem = field.substr(10);
    if (field.rfind("PCI_SLOT_NAME=", 0) == 0) slot = field.substr(14);
  }
  if (subsystem != "pci") return "";
  return "pci " + std::string(action) + " " + std::string(slot);
}

}  // namespace

bool UeventListener::Start() {
  const auto unavailable = [&](const char* step) {
    spdlog::warn(
        "uevents unavailable ({}: {}): new, removed and rebound devices are found by the periodic rescan "
        "(every {} s, --rescan-interval)",
        step, std::strerror(errno), periodic_.count());
    if (socket_ >= 0) close(socket_);
    socket_ = -1;
    return false;
  };
  socket_ = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  if (socket_ < 0) return unavailable("socket");
  sockaddr_nl address{};
  address.nl_family = AF_NETLINK;
  address.nl_groups = 1;  // the kernel's events (udev's own are group 2)
  if (bind(socket_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return unavailable("bind");
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return unavailable("eventfd");
  thread_ = std::thread([this] { Run(); });
  spdlog::info("uevents: listening for PCI hotplug (a rescan {} ms after an event)", kDebounce.count());
  return true;
}

void UeventListener::Stop() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  if (socket_ >= 0) close(socket_);
  if (stop_fd_ >= 0) close(stop_fd_);
  socket_ = stop_fd_ = -1;
}

void UeventListener::Run() {
  char buffer[8192];
  // Reads the events waiting, for up to `wait` ms; the first PCI one, or "" (and stopped: nullopt).
  const auto next = [&](int wait) -> std::optional<std::string> {
    pollfd fds[2] = {{socket_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, wait) < 0 && errno != EINTR) return std::string();
    if (fds[1].revents) return std::nullopt;
    if (!(fds[0].revents & POLLIN)) return std::string();
    const ssize_t n = recv(socket_, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n <= 0) return std::string();  // ENOBUFS (events lost): the periodic rescan covers them
    return PciEvent(buffer, static_cast<size_t>(n));
  };
  for (;;) {
    auto first = next(-1);
    if (!first) return;
    if (first->empty()) continue;
    const auto at = std::chrono::steady_clock::now();
    // The burst it starts: those within kDebounce join it.
    int joined = 0;
    for (auto until = at + kDebounce;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      auto more = next(static_cast<int>(left.count()));
      if (!more) return;
      if (!more->empty()) ++joined;
    }
    Status s = service_.Rescan({});
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - at).count();
    if (!s.ok()) {
      spdlog::error("uevent: {}: the rescan failed: {}", *first, s.message());
    } else {
      spdlog::info("uevent: {}{}: rescanned {:.0f} ms after it", *first,
                   joined ? " (and " + std::to_string(joined) + " more)" : "", ms);
    }
  }
}

}  // namespace cyborgfs::app
