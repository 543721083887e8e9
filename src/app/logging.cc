#include "logging.h"

#include <spdlog/details/file_helper.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>
#include <string>

namespace cyborgfs::app {
namespace {

// A file the audit lines are appended to, which can be reopened or moved
// while others log to it. No file: writes nothing.
class AuditFileSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // Opens `path` (or closes the file, if empty) anew.
  Status Open(const std::string& path) {
    std::lock_guard<std::mutex> lock(mutex_);
    file_.close();
    open_ = false;
    if (path.empty()) return Status::Ok();
    try {
      file_.open(path);
    } catch (const spdlog::spdlog_ex& e) {
      return Status::IoError("--audit-log: " + std::string(e.what()));
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
    file_.flush();  // an audit line is on disk (in the page cache) when the request returns
  }
  void flush_() override {
    if (open_) file_.flush();
  }

 private:
  spdlog::details::file_helper file_;
  bool open_ = false;  // REQUIRES: mutex_
};

std::shared_ptr<AuditFileSink> audit_file;

// Where the log goes: stderr in the foreground (and for --check), else syslog.
bool ToStderr(const Options& options) { return options.foreground || options.check; }

spdlog::sink_ptr LogSink(const Options& options) {
  if (ToStderr(options)) return std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return std::make_shared<spdlog::sinks::syslog_sink_mt>("cyborgfs", LOG_PID, LOG_DAEMON, false);
}

}  // namespace

Status SetUpLogging(const Options& options) {
  const std::string pattern = ToStderr(options) ? "%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v" : "%l %v";
  auto log = std::make_shared<spdlog::logger>("cyborgfs", LogSink(options));
  log->set_pattern(pattern);
  log->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(log);

  audit_file = std::make_shared<AuditFileSink>();
  audit_file->set_pattern("%v");
  auto audit = std::make_shared<spdlog::logger>("audit", LogSink(options));
  audit->set_pattern(pattern);
  audit->sinks().push_back(audit_file);  // its own pattern: the line alone
  audit->flush_on(spdlog::level::trace);
  spdlog::drop("audit");
  spdlog::register_logger(audit);
  return ApplyLogOptions(options);
}

Status ApplyLogOptions(const Options& options) {
  spdlog::default_logger()->set_level(spdlog::level::from_str(options.log_level));
  return audit_file->Open(options.audit_log);
}

}  // namespace cyborgfs::app
