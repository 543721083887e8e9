// Collects one JSON document that may arrive in several write(2) calls.
//
// The rules (the "buffer per file being written" of the README):
// - a write at offset 0 starts a new value: the bytes collected so far, and
//   the file's old value, are never part of it;
// - a write at the end of the collected bytes extends the value;
// - any other offset is refused (EINVAL): it would splice the old value in;
// - once the bytes form a complete document, Add() returns it; more bytes at
//   the end (a separately written newline) re-parse the whole;
// - an invalid prefix, or one over kMaxDocumentBytes, refuses this write and
//   every later write at a non-zero offset, until a new value starts at 0.
//
// Thread safety: none; the owner serializes calls.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cyborgfs/status.h"
#include "cyborgfs/values.h"

namespace cyborgfs {

class DocumentBuffer {
 public:
  struct Completed {
    std::string bytes;  // the whole document as written
    Json document;
    bool repeat = false;  // the same document as the previous Add() returned
  };

  // Adds `data` written at `offset`. Returns the document when these bytes
  // complete it, nullopt while it is still incomplete, or why the write is
  // refused.
  Result<std::optional<Completed>> Add(uint64_t offset, std::string_view data);

  // At a close: fails when incomplete bytes are pending, keeping them, since
  // another process may still write through the same open file.
  Status Flush() const;

  // Forgets everything. Returns why, if incomplete bytes are thrown away.
  std::optional<Status> Drop();

 private:
  Status Refuse(Status why);

  std::string bytes_;
  uint64_t end_ = 0;                  // offset where the next continuation lands
  std::optional<Status> refused_;     // set while continuations are refused
  std::optional<Status> incomplete_;  // set while the bytes are a prefix
  std::optional<Json> complete_;      // the last document Add() returned
};

}  // namespace cyborgfs
