#include "cyborgfs/audit.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace cyborgfs {
namespace {

constexpr size_t kMaxValueBytes = 256;

// `value` as a JSON string, cut at kMaxValueBytes (and said so).
std::string Quoted(std::string_view value) {
  std::string text(value.substr(0, kMaxValueBytes));
  if (value.size() > kMaxValueBytes) text += "... (" + std::to_string(value.size()) + " bytes)";
  return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string Now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  return std::string(text) + "." + std::to_string(1000 + ms).substr(1) + "Z";
}

// The process's command name (/proc/PID/comm), as ps shows it.
std::string CommandOf(pid_t pid) {
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name.empty() ? "?" : name;
}

std::string Who(const Caller& who) {
  switch (who.kind) {
    case Caller::Kind::kDaemon:
      return "uid=- pid=- command=\"cyborgfs\"";
    case Caller::Kind::kKernelWriteback:  // the request names no process (and no user)
      return "uid=- pid=- command=\"written back by the kernel\"";
    case Caller::Kind::kToken:
      return "uid=- pid=- command=\"api token\" address=" + Quoted(who.address);
    case Caller::Kind::kFleetRequest:
      return "uid=- pid=- command=\"cyborgfs\" accelerator_request=" + who.address;
    case Caller::Kind::kProcess:
      break;
  }
  return "uid=" + std::to_string(who.uid) + " pid=" + std::to_string(who.pid) +
         " command=" + Quoted(CommandOf(who.pid));
}

void Write(const std::string& line) {
  auto logger = spdlog::get("audit");
  (logger ? logger : spdlog::default_logger())->info("audit time={} {}", Now(), line);
}

}  // namespace

namespace audit {

void Changed(const Caller& who, std::string_view accelerator, std::string_view file, std::string_view before,
             std::string_view after) {
  Write(Who(who) + " accelerator=" + Quoted(accelerator) + " file=" + Quoted(file) + " old=" + Quoted(before) +
        " new=" + Quoted(after));
}

void Refused(const Caller& who, std::string_view accelerator, std::string_view file, const Status& why) {
  Write(Who(who) + " accelerator=" + Quoted(accelerator) + " file=" + Quoted(file) + " error=" + Quoted(why.message()));
}

void RequestChanged(const Caller& who, std::string_view request, std::string_view action, std::string_view state) {
  Write(Who(who) + " accelerator_request=" + Quoted(request) + " action=" + Quoted(action) + " new=" + Quoted(state));
}

void RequestRefused(const Caller& who, std::string_view request, std::string_view action, const Status& why) {
  Write(Who(who) + " accelerator_request=" + Quoted(request) + " action=" + Quoted(action) +
        " error=" + Quoted(why.message()));
}

}  // namespace audit
}  // namespace cyborgfs
