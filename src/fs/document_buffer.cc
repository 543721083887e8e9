#include "document_buffer.h"

#include <algorithm>

namespace cyborgfs {
namespace {

Status TooLarge() { return Status::TooLarge("document over " + std::to_string(kMaxDocumentBytes) + " bytes"); }

}  // namespace

Status DocumentBuffer::Refuse(Status why) {
  bytes_.clear();
  uses_old_value_ = false;
  incomplete_.reset();
  complete_.reset();
  refused_ = why;
  return why;
}

Status DocumentBuffer::Resize(uint64_t size, std::string_view old_value) {
  if (size > kMaxDocumentBytes) return TooLarge();
  if (size > bytes_.size()) {
    if (size > old_value.size()) {
      return Status::Invalid("byte " + std::to_string(bytes_.size()) + " onwards was never written (the value " +
                             "being written has " + std::to_string(bytes_.size()) + " bytes, the old one " +
                             std::to_string(old_value.size()) + ")");
    }
    bytes_.append(old_value.substr(bytes_.size(), size - bytes_.size()));
    uses_old_value_ = true;
  }
  bytes_.resize(size);
  return Status::Ok();
}

void DocumentBuffer::ForgetIfQuiet() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_write_ >= quiet_) {
    const bool unfinished = !bytes_.empty();
    const uint64_t end = bytes_.size();
    Drop();
    if (unfinished) forgotten_end_ = end;
  }
  last_write_ = now;
}

DocumentBuffer::Outcome DocumentBuffer::Add(uint64_t offset, std::string_view data, std::string_view old_value) {
  ForgetIfQuiet();
  const uint64_t end = offset + data.size();
  if (offset == 0) {
    Drop();
  } else if (refused_) {
    return *refused_;  // the rest of a refused value, wherever the writer retries it
  } else if (bytes_.empty() && forgotten_end_ == offset) {
    return Refuse(Status::Invalid("this write continues a document whose first " + std::to_string(offset) +
                                  " bytes were forgotten after " + std::to_string(quiet_.count() / 1000) +
                                  " s without writes; the value is unchanged: write it again, whole"));
  } else if (bytes_.empty() && end <= kMaxDocumentBytes && offset <= old_value.size()) {
    // A patch of the value in place, as in a regular file (the old value's
    // tail kept), when that makes a document; else, below, the old value's
    // start with these bytes (what `rsync --inplace` shrinking a value does
    // before its ftruncate).
    std::string patched(old_value);
    patched.replace(offset, data.size(), data);
    if (ParseJsonDocument(patched, keys_).state == DocumentState::kComplete) {
      bytes_ = std::move(patched);
      uses_old_value_ = true;
      return Evaluate();
    }
  }
  if (end < offset || end > kMaxDocumentBytes) return Refuse(TooLarge());
  if (Status s = Resize(std::max<uint64_t>(offset, bytes_.size()), old_value); !s.ok()) return Refuse(s);
  bytes_.replace(offset, data.size(), data);
  return Evaluate();
}

DocumentBuffer::Outcome DocumentBuffer::Truncate(uint64_t size, std::string_view old_value) {
  ForgetIfQuiet();
  if (size == 0) {
    Drop();
    return std::optional<Completed>();
  }
  if (refused_) return *refused_;
  // Being written: bytes collected, or a document just completed (the value).
  const bool writing = !bytes_.empty() || complete_;
  const uint64_t current = bytes_.empty() ? old_value.size() : bytes_.size();
  if (!writing || size == current) return std::optional<Completed>();
  if (Status s = Resize(size, old_value); !s.ok()) return Refuse(s);
  return Evaluate();
}

DocumentBuffer::Outcome DocumentBuffer::Evaluate() {
  ParsedDocument parsed = ParseJsonDocument(bytes_, keys_);
  switch (parsed.state) {
    case DocumentState::kIncomplete:
      incomplete_ = parsed.error;
      return std::optional<Completed>();
    case DocumentState::kInvalid:
      return Refuse(parsed.error);
    case DocumentState::kComplete:
      break;
  }
  incomplete_.reset();
  forgotten_end_.reset();
  const bool repeat = complete_ && *complete_ == parsed.value;
  complete_ = parsed.value;
  std::string bytes = std::move(bytes_);
  bytes_.clear();  // later writes land on the value this document becomes
  const bool uses_old_value = uses_old_value_;
  uses_old_value_ = false;
  return std::optional<Completed>(Completed{std::move(bytes), std::move(parsed.value), repeat, uses_old_value});
}

std::optional<Status> DocumentBuffer::Pending() const {
  if (!incomplete_) return std::nullopt;
  return Status::Invalid("incomplete JSON document (" + std::to_string(bytes_.size()) +
                         " bytes so far): " + incomplete_->message());
}

void DocumentBuffer::Drop() {
  bytes_.clear();
  uses_old_value_ = false;
  refused_.reset();
  incomplete_.reset();
  complete_.reset();
  forgotten_end_.reset();
}

}  // namespace cyborgfs
