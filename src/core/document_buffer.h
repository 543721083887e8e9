// Collects one JSON document that may arrive in several write(2) calls.
//
// The rules (the "buffer per file being written" of the README):
// - a write at offset 0 starts a new value: the bytes collected so far, and
//   the part of the file's old value past what is written, are not in it;
// - a write elsewhere lands at its offset, as in a regular file; bytes it
//   skips over keep the old value's bytes at those offsets (so `rsync
//   --inplace`, which skips unchanged blocks, and `>>` see a normal file);
//   skipping past the end of the old value too is refused (EINVAL);
// - after each write the whole is parsed: once it is a complete document,
//   Add() returns it, and later writes land on the file's value (the
//   document, once applied); while it is a valid prefix, Add() waits for more;
// - an invalid value, or one over kMaxDocumentBytes, refuses this write and
//   every later write at a non-zero offset, until a new value starts at 0;
// - Truncate() resizes the value being written, or the one a write just
//   completed (the final ftruncate of `rsync --inplace`); a truncate to 0,
//   or with nothing written lately, changes nothing: a truncate alone never
//   sets a value;
// - opens and closes are not seen, so what a writer left (incomplete or
//   refused bytes) is forgotten once no write came for `quiet`: a later
//   writer at a non-zero offset then starts from the file's value.
//
// Thread safety: none; the owner serializes calls.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cyborgfs/status.h"
#include "cyborgfs/values.h"

namespace cyborgfs {

class DocumentBuffer {
 public:
  static constexpr std::chrono::milliseconds kQuiet{5000};
  explicit DocumentBuffer(std::chrono::milliseconds quiet = kQuiet) : quiet_(quiet) {}

  struct Completed {
    std::string bytes;  // the whole document as written
    Json document;
    bool repeat = false;  // the same document as the previous Add() returned
  };
  using Outcome = Result<std::optional<Completed>>;

  // Adds `data` written at `offset` of the file whose value is now
  // `old_value`. Returns the document when these bytes complete it, nullopt
  // while it is still incomplete, or why the write is refused.
  Outcome Add(uint64_t offset, std::string_view data, std::string_view old_value);

  // ftruncate(2) of the file while a value is being written; as Add().
  Outcome Truncate(uint64_t size, std::string_view old_value);

  // Why the bytes written so far are not a document yet, while they are an
  // incomplete one; nullopt otherwise.
  std::optional<Status> Pending() const;

  // Forgets everything.
  void Drop();

 private:
  Status Refuse(Status why);
  // Makes bytes_ `size` long, filling from `old_value` (kInvalid past its end).
  Status Resize(uint64_t size, std::string_view old_value);
  Outcome Evaluate();
  // Drops what an earlier writer left, if it has been quiet for quiet_.
  void ForgetIfQuiet();

  std::string bytes_;                 // the value being written; empty: none
  std::optional<Status> refused_;     // set while continuations are refused
  std::optional<Status> incomplete_;  // set while the bytes are a prefix
  std::optional<Json> complete_;      // the last document Add() returned
  const std::chrono::milliseconds quiet_;
  std::chrono::steady_clock::time_point last_write_{};
};

}  // namespace cyborgfs
