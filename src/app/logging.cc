#include "logging.h"

#include <spdlog/details/file_helper.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <string>

namespace cyborgfs::app {
namespace {

constexpr const char* kSyslogSocket = "/dev/log";
constexpr const char* kTimedPattern = "%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v";

// A file lines are appended to, which can be reopened or moved while others
// log to it. No file: writes nothing.
class ReopenableFileSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ReopenableFileSink(std::string option) : option_(std::move(option)) {}

  // Opens `path` (or closes the file, if empty) anew.
  Status Open(const std::string& path) {
    std::lock_guard<std::mutex> lock(mutex_);
    file_.close();
    open_ = false;
    if (path.empty()) return Status::Ok();
    try {
      file_.open(path);
    } catch (const spdlog::spdlog_ex& e) {
      return Status::IoError(option_ + ": " + std::string(e.what()));
    }
    open_ = true;
    return Status::Ok();
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (!open_) return;
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    file_.write(line);
    file_.flush();  // a line is on disk (in the page cache) when the request returns
  }
  void flush_() override {
    if (open_) file_.flush();
  }

 private:
  const std::string option_;
  spdlog::details::file_helper file_;
  bool open_ = false;  // REQUIRES: mutex_
};

std::shared_ptr<ReopenableFileSink> log_file;
std::shared_ptr<ReopenableFileSink> audit_file;
std::string default_log_file;  // DATABASE.log, where there is no syslog socket

bool ToStderr(const Options& options) { return options.foreground || options.check; }

// Whether a syslog daemon listens: a datagram to /dev/log would be taken.
bool SyslogListens() {
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, kSyslogSocket, sizeof address.sun_path - 1);
  const bool listens = connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  close(fd);
  return listens;
}

// The file the log goes to for `options`; empty for none.
std::string LogFileOf(const Options& options) {
  if (!options.log_file.empty()) return options.log_file;
  return ToStderr(options) ? "" : default_log_file;
}

}  // namespace

Result<std::string> SetUpLogging(const Options& options, const std::string& database) {
  const bool to_syslog = !ToStderr(options) && options.log_file.empty() && SyslogListens();
  default_log_file = to_syslog ? "" : database + ".log";
  std::vector<spdlog::sink_ptr> sinks;
  if (ToStderr(options)) sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (to_syslog)
    sinks.push_back(std::make_shared<spdlog::sinks::syslog_sink_mt>("cyborgfs", LOG_PID, LOG_DAEMON, false));
  log_file = std::make_shared<ReopenableFileSink>("--log-file");
  log_file->set_pattern(kTimedPattern);
  sinks.push_back(log_file);
  const std::string pattern = to_syslog ? "%l %v" : kTimedPattern;
  auto log = std::make_shared<spdlog::logger>("cyborgfs", sinks.begin(), sinks.end());
  for (size_t k = 0; k + 1 < sinks.size(); ++k) sinks[k]->set_pattern(pattern);
  log->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(log);

  audit_file = std::make_shared<ReopenableFileSink>("--audit-log");
  audit_file->set_pattern("%v");  // the line alone
  sinks.push_back(audit_file);
  auto audit = std::make_shared<spdlog::logger>("audit", sinks.begin(), sinks.end());
  audit->flush_on(spdlog::level::trace);
  spdlog::drop("audit");
  spdlog::register_logger(audit);
  if (Status s = ApplyLogOptions(options); !s.ok()) return s;
  const std::string file = LogFileOf(options);
  if (to_syslog) return std::string("syslog");
  if (ToStderr(options)) return file.empty() ? std::string("stderr") : "stderr and " + file;
  return file;
}

Status ApplyLogOptions(const Options& options) {
  spdlog::default_logger()->set_level(spdlog::level::from_str(options.log_level));
  if (Status s = log_file->Open(LogFileOf(options)); !s.ok()) return s;
  return audit_file->Open(options.audit_log);
}

}  // namespace cyborgfs::app
