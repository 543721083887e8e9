#include "file_writes.h"

#include "cyborgfs/audit.h"

namespace cyborgfs::fs {
namespace {

// What the error file says of a document not complete yet: no close(2)
// reaches the daemon, so it is the only place that can tell the writer.
std::string Waiting() {
  return "spec: waiting for the rest, the value is unchanged (what was written is forgotten " +
         std::to_string(DocumentBuffer::kQuiet.count() / 1000) + " s after the last write): ";
}

Status TooLong(size_t size, size_t most, const char* what) {
  return Status::TooLarge(std::string(what) + " of " + std::to_string(size) + " bytes, at most " +
                          std::to_string(most) + " are allowed");
}

// rename(2) has no "too large": such a value is invalid for it.
Status AsRenameRefusal(Status why) { return why.code() == Code::kTooLarge ? Status::Invalid(why.message()) : why; }

}  // namespace

std::shared_ptr<FileWrites::SpecWrites> FileWrites::SpecOf(int64_t id) {
  std::lock_guard lock(mu_);
  auto& slot = specs_[id];
  if (!slot) slot = std::make_shared<SpecWrites>();
  return slot;
}

void FileWrites::Forget(int64_t id) {
  std::lock_guard lock(mu_);
  specs_.erase(id);
}

Result<FileWrites::Change> FileWrites::Unchanged(int64_t id) const {
  Service::Snapshot current = service_.FindById(id);
  if (!current) return Status::NotFound("no such accelerator");
  return Change{current, current, {}};
}

Result<FileWrites::Change> FileWrites::Write(int64_t id, Attr attr, uint64_t offset, std::string_view data,
                                             const Caller& caller) {
  const AttrInfo& info = AttributeInfo(attr);
  if (info.write == WriteKind::kReadOnly) return Status::AccessDenied(std::string(info.name) + " is read-only");
  if (info.write == WriteKind::kDocument) {
    return ChangeSpec(id, caller,
                      [&](DocumentBuffer& buffer, std::string_view old) { return buffer.Add(offset, data, old); });
  }
  return SetText(id, attr, data, RequestFor(caller, info.name));
}

Result<FileWrites::Change> FileWrites::Truncate(int64_t id, Attr attr, uint64_t size, const Caller& caller) {
  if (AttributeInfo(attr).write != WriteKind::kDocument) return Unchanged(id);
  return ChangeSpec(id, caller,
                    [&](DocumentBuffer& buffer, std::string_view old) { return buffer.Truncate(size, old); });
}

template <typename ChangeBuffer>
Result<FileWrites::Change> FileWrites::ChangeSpec(int64_t id, const Caller& caller, ChangeBuffer change) {
  const std::shared_ptr<SpecWrites> slot = SpecOf(id);
  std::lock_guard lock(slot->mu);
  const Service::Snapshot current = service_.FindById(id);
  if (!current) return Status::NotFound("no such accelerator");
  const Service::Request request = RequestFor(caller, "spec");
  auto outcome = change(slot->buffer, AttributeInfo(Attr::kSpec).render(*current));
  if (!outcome.ok()) return service_.Refuse(id, outcome.status(), request);
  if (!*outcome) {
    if (auto pending = slot->buffer.Pending()) service_.Explain(id, Waiting() + pending->message());
    return Change{current, current, {}};
  }
  const DocumentBuffer::Completed& done = **outcome;
  // A document made partly of the old value's bytes is that document only
  // while the old value is the accelerator's: else another request changed
  // it meanwhile (kBusy, said in the error file).
  const auto expected = done.uses_old_value ? std::optional<int64_t>(current->generation) : std::nullopt;
  auto set = service_.SetSpec(id, done.document, done.bytes, expected, request);
  if (set.ok()) {
    if (auto now = service_.FindById(id); now && now->last_error.rfind(Waiting(), 0) == 0) service_.Explain(id, "");
  }
  return set;
}

Result<FileWrites::Change> FileWrites::SetText(int64_t id, Attr attr, std::string_view bytes,
                                               const Service::Request& request) {
  if (bytes.size() > kMaxTextBytes) return service_.Refuse(id, TooLong(bytes.size(), kMaxTextBytes, "value"), request);
  if (attr == Attr::kName) return service_.Rename(id, std::string(StripNewline(bytes)), std::string(bytes), request);
  if (attr == Attr::kMaintenance) {
    const std::string_view value = StripNewline(bytes);
    if (value != "0" && value != "1") {
      return service_.Refuse(id, Status::Invalid("maintenance: write 1 to take it out of service, 0 to put it back"),
                             request);
    }
    return service_.SetMaintenance(id, value == "1", request);
  }
  auto target = ParseAttach(bytes);
  if (!target.ok()) return service_.Refuse(id, target.status(), request);
  if (!*target) return service_.Detach(id, request);
  return service_.Attach(id, **target, std::string(bytes), request);
}

Result<FileWrites::Change> FileWrites::Replace(int64_t id, Attr attr, const std::string& content,
                                               const std::string& source, const Caller& caller) {
  const AttrInfo& info = AttributeInfo(attr);
  const Service::Request request = RequestFor(caller, std::string(info.name) + " (renamed from " + source + ")");
  if (info.write == WriteKind::kReadOnly) {
    return service_.Refuse(id, Status::AccessDenied("the file is read-only"), request);
  }
  if (info.write == WriteKind::kText) {
    auto set = SetText(id, attr, content, request);
    return set.ok() ? set : Result<Change>(AsRenameRefusal(set.status()));
  }
  const std::shared_ptr<SpecWrites> slot = SpecOf(id);
  std::lock_guard lock(slot->mu);
  if (content.size() > kMaxDocumentBytes) {
    return AsRenameRefusal(service_.Refuse(id, TooLong(content.size(), kMaxDocumentBytes, "document"), request));
  }
  ParsedDocument parsed = ParseJsonDocument(content);
  if (parsed.state == DocumentState::kIncomplete) {
    return service_.Refuse(id, parsed.error.Prefixed("incomplete JSON document"), request);
  }
  if (parsed.state == DocumentState::kInvalid) return service_.Refuse(id, parsed.error, request);
  return service_.SetSpec(id, parsed.value, content, std::nullopt, request);
}

Result<FileWrites::Change> FileWrites::WriteCreate(uint64_t offset, std::string_view data, const Caller& caller) {
  std::lock_guard lock(create_mu_);
  auto refuse = [&](Status why) {
    why = why.Prefixed("create");
    audit::Refused(caller, "", "create", why);
    return why;
  };
  // Like a regular file, create holds what was written last (it reads as empty).
  auto added = create_.Add(offset, data, last_create_body_);
  if (!added.ok()) return refuse(added.status());
  if (!*added) return Change{};
  last_create_body_ = (*added)->bytes;
  if ((*added)->repeat) return Change{};
  auto body = ParseCreateRequest((*added)->document);
  if (!body.ok()) {
    create_.Drop();  // the same body may be tried again
    return refuse(body.status());
  }
  auto made = service_.Create(*body, RequestFor(caller, "create"));  // the Service audits its refusals
  if (made.ok()) return made;
  create_.Drop();
  return made.status().Prefixed("create");
}

Result<std::optional<Json>> FileWrites::WriteRequest(uint64_t offset, std::string_view data, const Caller& caller) {
  constexpr const char* kFile = "fleet/requests/create";
  std::optional<Json> body;
  {
    std::lock_guard lock(request_mu_);
    auto added = request_.Add(offset, data, last_request_body_);
    if (!added.ok()) {
      const Status why = added.status().Prefixed(kFile);
      audit::Refused(caller, "", kFile, why);
      return why;
    }
    if (!*added) return std::optional<Json>();
    last_request_body_ = (*added)->bytes;
    body = std::move((*added)->document);
  }
  if (!requests_) return Status::NotFound("no fleet (--fleet)");
  // Not under request_mu_: the fleet's PostgreSQL may be slow, other writers need not wait for it.
  auto made = requests_->Create(*body, AcceleratorRequests::Taken::kSameIsDone, caller);  // audited
  if (made.ok()) return std::optional<Json>(std::move(*made));
  {
    std::lock_guard lock(request_mu_);
    request_.Drop();  // the same body may be tried again
  }
  return made.status().Prefixed(kFile);
}

Status FileWrites::WriteRescan(std::string_view data, const Caller& caller) {
  if (StripNewline(data) != "1") return Status::Invalid("rescan: write 1 to rescan the drivers");
  return service_.Rescan(RequestFor(caller, "rescan")).Prefixed("rescan");
}

}  // namespace cyborgfs::fs
