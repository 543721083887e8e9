// The write(2) protocol of the tree's writable files, over the Service's verbs.
//
// The core takes whole values (a spec, a name, an attach target); how a
// value arrives through files is this front end's business:
// - text files (name, attach, maintenance) take one value per write(2), as sysfs does, at
//   most kMaxTextBytes, with or without a trailing newline;
// - document files (spec, create) collect a JSON document over several
//   writes (DocumentBuffer, one per accelerator and one for create);
// - a rename(2) of a scratch file over a listed file (Replace) sets the
//   whole content as one write would, worded "spec (renamed from sedAb12)";
// - `rescan` takes "1";
// - fleet/requests/create (--fleet) collects an accelerator request's body
//   as create does, and makes the request (AcceleratorRequests::Create);
//   the same body with the uuid of a request that asks it is that request.
// A refusal is recorded by the Service (the error file, the audit trail)
// under the file's name as label. A verb's Change is returned as is; a write
// that did not reach a verb (a document not complete yet) returns the
// accelerator unchanged.
//
// Thread safety: all methods may be called concurrently; the writes of one
// accelerator's spec are taken one at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "cyborgfs/accelerator_requests.h"
#include "cyborgfs/service.h"
#include "document_buffer.h"

namespace cyborgfs::fs {

class FileWrites {
 public:
  using Change = Service::Change;

  // Requests carry `origin` (the file front end), so that the Service's
  // listener for it is not told of what these calls return. `requests`:
  // the fleet's (--fleet), or nullptr.
  FileWrites(Service& service, const void* origin, AcceleratorRequests* requests = nullptr)
      : service_(service), origin_(origin), requests_(requests) {}

  // A write(2) of `attr` of accelerator `id` at `offset`. kAccessDenied for a
  // read-only file; kNotFound if the accelerator is gone.
  Result<Change> Write(int64_t id, Attr attr, uint64_t offset, std::string_view data, const Caller& caller);
  // ftruncate(2): resizes a document being written; otherwise nothing.
  Result<Change> Truncate(int64_t id, Attr attr, uint64_t size, const Caller& caller);
  // rename(2) of scratch file `source` (its `content`) over `attr`. A value
  // that is invalid, incomplete or too large is kInvalid (rename(2) has no
  // "too large"); kAccessDenied for a read-only file.
  Result<Change> Replace(int64_t id, Attr attr, const std::string& content, const std::string& source,
                         const Caller& caller);
  // A write(2) of `create`: the Cyborg POST body, possibly in several writes.
  // The change made when a write completes it (an unchanged, empty one before).
  Result<Change> WriteCreate(uint64_t offset, std::string_view data, const Caller& caller);
  // A write(2) of `rescan`: "1" rescans, anything else is kInvalid.
  Status WriteRescan(std::string_view data, const Caller& caller);
  // A write(2) of fleet/requests/create: the request made when a write
  // completes its body, nullopt before. Errors as AcceleratorRequests::Create's.
  Result<std::optional<Json>> WriteRequest(uint64_t offset, std::string_view data, const Caller& caller);

  // Forgets what is pending for an accelerator that is gone.
  void Forget(int64_t id);

 private:
  struct SpecWrites {
    std::mutex mu;
    DocumentBuffer buffer;  // REQUIRES: mu
  };
  std::shared_ptr<SpecWrites> SpecOf(int64_t id);
  Service::Request RequestFor(const Caller& caller, std::string label) const {
    return Service::Request{caller, origin_, std::move(label)};
  }
  // Changes accelerator `id`'s spec buffer by `change` and applies the
  // document it completes.
  template <typename ChangeBuffer>
  Result<Change> ChangeSpec(int64_t id, const Caller& caller, ChangeBuffer change);
  // One whole value of a text file, worded `label` if refused.
  Result<Change> SetText(int64_t id, Attr attr, std::string_view bytes, const Service::Request& request);
  Result<Change> Unchanged(int64_t id) const;

  Service& service_;
  const void* const origin_;
  AcceleratorRequests* const requests_;
  std::mutex mu_;
  std::unordered_map<int64_t, std::shared_ptr<SpecWrites>> specs_;  // REQUIRES: mu_
  std::mutex create_mu_;
  DocumentBuffer create_{DocumentBuffer::kQuiet, DuplicateKeys::kRefused};  // REQUIRES: create_mu_
  std::string last_create_body_;                                            // REQUIRES: create_mu_
  std::mutex request_mu_;
  DocumentBuffer request_{DocumentBuffer::kQuiet, DuplicateKeys::kRefused};  // REQUIRES: request_mu_
  std::string last_request_body_;                                            // REQUIRES: request_mu_
};

}  // namespace cyborgfs::fs
