// Collects one JSON document that may arrive in several write(2) calls.
//
// The rules (the README's "How writes behave"), which make a document file
// behave like a regular file being rewritten, except that a write at offset
// 0 always starts a new value (a shell's `>` truncates; a tool that does not
// still means a new document):
// - a write at offset 0 starts a new value: what was collected so far, and
//   the part of the file's old value past what is written, are not in it;
// - while a value is being written, a write elsewhere lands at its offset;
//   bytes it skips over keep the old value's bytes at those offsets (so
//   `rsync --inplace`, which skips unchanged blocks, sees a normal file);
//   skipping past the end of the old value too is refused (EINVAL);
// - with no value being written, a write at a non-zero offset patches the
//   file's value in place, as in a regular file (`dd conv=notrunc seek=N`,
//   a python seek and write), when the value with those bytes replaced is a
//   document; otherwise it is taken as above (the old value's bytes before
//   it, nothing after: `rsync --inplace` shrinking a value writes the
//   changed end, then truncates);
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
//   writer starts from the file's value. A write that would continue the
//   forgotten bytes where they stopped is refused (EINVAL), as is the rest
//   of that document: a value is only ever the old one or exactly what one
//   writer wrote, never a forgotten writer's end on the old value's start.
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
  explicit DocumentBuffer(std::chrono::milliseconds quiet = kQuiet, DuplicateKeys keys = DuplicateKeys::kAllowed)
      : quiet_(quiet), keys_(keys) {}

  struct Completed {
    std::string bytes;  // the whole document as written
    Json document;
    bool repeat = false;  // the same document as the previous Add() returned
    // Some of its bytes are the old value's (a patch, skipped bytes): it is
    // the document only as long as the old value is the file's value.
    bool uses_old_value = false;
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
  // Forgets what an earlier writer left, if it has been quiet for quiet_,
  // and remembers where its bytes ended (forgotten_end_).
  void ForgetIfQuiet();

  std::string bytes_;                 // the value being written; empty: none
  std::optional<Status> refused_;     // set while continuations are refused
  std::optional<Status> incomplete_;  // set while the bytes are a prefix
  std::optional<Json> complete_;      // the last document Add() returned
  bool uses_old_value_ = false;       // bytes_ holds some of the old value's bytes
  // Where the bytes of a value forgotten unfinished ended, until a new value
  // starts or one is completed: a write there continues it.
  std::optional<uint64_t> forgotten_end_;
  const std::chrono::milliseconds quiet_;
  const DuplicateKeys keys_;
  std::chrono::steady_clock::time_point last_write_{};
};

}  // namespace cyborgfs
