// The one error type of cyborgfs.
//
// Every fallible call returns a Status (or a Result<T>): a code that says what
// kind of failure happened and a message a person can read. The core never
// deals in errno; the FUSE adapter maps a Code to an errno in exactly one
// place (src/fs/errno_map.cc), so the codes below are the product's error
// vocabulary. Messages are written for the accelerator's `error` file and the
// log: "<what>: <why>", without a trailing newline.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace cyborgfs {

enum class Code {
  kOk,
  kInvalid,       // malformed or semantically wrong input (EINVAL)
  kNotFound,      // the named object does not exist (ENOENT)
  kExists,        // the uuid or name is taken (EEXIST)
  kBusy,          // in use: attached elsewhere, still reported by a driver (EBUSY)
  kNoDevice,      // the hardware is offline or gone (ENODEV)
  kTooLarge,      // a value over its size bound (EFBIG)
  kAccessDenied,  // the file does not allow this access (EACCES)
  kNotPermitted,  // the operation is never allowed on this object (EPERM)
  kIoError,       // a driver or the database failed (EIO)
  kNoSpace,       // no room: the disk is full, a scratch bound is reached (ENOSPC)
  kIsFolder,      // a file operation named a folder (EISDIR)
  kNotFolder,     // a folder operation named a file (ENOTDIR)
  kNotEmpty,      // the folder still holds scratch files (ENOTEMPTY)
  kReadOnly,      // changes are refused, reads go on: the database was moved or deleted (EROFS)
  kUnavailable,   // what is asked needs the fleet's PostgreSQL, which cannot be reached now (EAGAIN)
};

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  static Status Ok() { return {}; }
  static Status Invalid(std::string msg) { return {Code::kInvalid, std::move(msg)}; }
  static Status NotFound(std::string msg) { return {Code::kNotFound, std::move(msg)}; }
  static Status Exists(std::string msg) { return {Code::kExists, std::move(msg)}; }
  static Status Busy(std::string msg) { return {Code::kBusy, std::move(msg)}; }
  static Status NoDevice(std::string msg) { return {Code::kNoDevice, std::move(msg)}; }
  static Status TooLarge(std::string msg) { return {Code::kTooLarge, std::move(msg)}; }
  static Status AccessDenied(std::string msg) { return {Code::kAccessDenied, std::move(msg)}; }
  static Status NotPermitted(std::string msg) { return {Code::kNotPermitted, std::move(msg)}; }
  static Status IoError(std::string msg) { return {Code::kIoError, std::move(msg)}; }
  static Status NoSpace(std::string msg) { return {Code::kNoSpace, std::move(msg)}; }
  static Status IsFolder(std::string msg) { return {Code::kIsFolder, std::move(msg)}; }
  static Status NotFolder(std::string msg) { return {Code::kNotFolder, std::move(msg)}; }
  static Status NotEmpty(std::string msg) { return {Code::kNotEmpty, std::move(msg)}; }
  static Status ReadOnly(std::string msg) { return {Code::kReadOnly, std::move(msg)}; }
  static Status Unavailable(std::string msg) { return {Code::kUnavailable, std::move(msg)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // The same failure with `prefix + ": "` in front of the message.
  Status Prefixed(const std::string& prefix) const { return ok() ? *this : Status(code_, prefix + ": " + message_); }

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// A value or the Status that explains why there is none. Reaching for the
// value of a Result that has none is a bug: it throws std::logic_error (the
// front ends turn it into a failed request and a log line), never undefined
// behaviour.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    if (status_.ok()) status_ = Status::IoError("internal error: a Result made of an OK status");
  }
  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return Checked(); }
  const T& value() const& { return Checked(); }
  T&& value() && { return std::move(Checked()); }
  T* operator->() { return &Checked(); }
  const T* operator->() const { return &Checked(); }
  T& operator*() { return Checked(); }
  const T& operator*() const { return Checked(); }

 private:
  T& Checked() {
    if (!value_) throw std::logic_error("internal error: no value: " + status_.message());
    return *value_;
  }
  const T& Checked() const { return const_cast<Result*>(this)->Checked(); }

  std::optional<T> value_;
  Status status_;
};

}  // namespace cyborgfs
