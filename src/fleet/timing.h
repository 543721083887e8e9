// Time, as the fleet's threads use it: wall-clock seconds for people (never
// for a decision: leases are judged on the server's clock), and jittered
// waits, so hosts restarted together do not come back together.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <random>
#include <string>

namespace cyborgfs::fleet {

// A failed connection is tried again after kFirstRetry, doubling to kLastRetry.
inline constexpr std::chrono::seconds kFirstRetry{1};
inline constexpr std::chrono::seconds kLastRetry{30};

inline int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// `d` scaled by a random factor in [0.8, 1.2).
inline std::chrono::milliseconds Jittered(std::chrono::milliseconds d) {
  static thread_local std::mt19937 random{std::random_device{}()};
  std::uniform_real_distribution<double> factor(0.8, 1.2);
  return std::chrono::milliseconds(static_cast<int64_t>(static_cast<double>(d.count()) * factor(random)));
}

// "2026-12-02T08:00:00Z"
inline std::string UtcTime(int64_t unix_seconds) {
  const std::time_t seconds = unix_seconds;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

}  // namespace cyborgfs::fleet
