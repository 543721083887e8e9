#include "document_buffer.h"

namespace cyborgfs {

Status DocumentBuffer::Refuse(Status why) {
  bytes_.clear();
  incomplete_.reset();
  complete_.reset();
  refused_ = why;
  return why;
}

Result<std::optional<DocumentBuffer::Completed>> DocumentBuffer::Add(uint64_t offset, std::string_view data) {
  if (offset == 0) {
    Drop();
  } else if (refused_) {
    return *refused_;  // the rest of a refused value, wherever the writer retries it
  } else if (offset != end_) {
    return Refuse(Status::Invalid("write at offset " + std::to_string(offset) +
                                  " does not continue the value being written (expected offset 0 or " +
                                  std::to_string(end_) + ")"));
  }
  end_ = offset + data.size();
  if (bytes_.size() + data.size() > kMaxDocumentBytes) {
    return Refuse(Status::TooLarge("document over " + std::to_string(kMaxDocumentBytes) + " bytes"));
  }
  bytes_.append(data);
  ParsedDocument parsed = ParseJsonDocument(bytes_);
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
  const bool repeat = complete_ && *complete_ == parsed.value;
  complete_ = parsed.value;
  return std::optional<Completed>(Completed{bytes_, std::move(parsed.value), repeat});
}

Status DocumentBuffer::Flush() const {
  if (!incomplete_) return Status::Ok();
  return Status::Invalid("incomplete JSON document (" + std::to_string(bytes_.size()) +
                         " bytes so far): " + incomplete_->message());
}

std::optional<Status> DocumentBuffer::Drop() {
  std::optional<Status> lost;
  if (incomplete_) lost = Flush();
  bytes_.clear();
  end_ = 0;
  refused_.reset();
  incomplete_.reset();
  complete_.reset();
  return lost;
}

}  // namespace cyborgfs
