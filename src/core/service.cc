// The accelerator lifecycle.
//
// Invariants:
//  1. An accelerator is attached (attachment != "") in state attached, error,
//     or offline; it is detached in state available or offline.
//  2. Only an accelerator reported by a running driver can be available or
//     attached through a driver; one created by hand has no driver and never
//     goes offline.
//  3. Every state below is durable: each transition is one Store commit,
//     made after the driver step succeeded and before the request returns.
//
//                 attach [ApplyAttach]
//     available ------------------------> attached
//         ^      <------------------------    |
//         |         detach [Detach]           | detach fails in the driver
//         |                                   v [Detach]
//         |                                 error --detach [Detach]--> available
//         |
//         |  driver reports it again [Refresh]
//     offline <-- driver stops reporting it [Start] (from any state; the
//                 attachment is kept, and restored through the driver when the
//                 device comes back; a failed restore is the error state)
//
// Removal [Remove] is allowed from available, error-free detached states and
// from offline once detached.
#include "cyborgfs/service.h"

#include <spdlog/spdlog.h>

#include <ctime>
#include <set>
#include <tuple>

#include "cyborgfs/audit.h"
#include "cyborgfs/values.h"
#include "document_buffer.h"

namespace cyborgfs {

struct Service::Slot {
  std::mutex op;               // held for every change of this accelerator
  DocumentBuffer spec_writes;  // REQUIRES: op
};

namespace {

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

// The Cyborg columns follow the spec, falling back to the driver's facts.
void DeriveColumns(Accelerator& a) {
  const Json spec = Json::parse(a.spec);
  auto text = [&](const char* key, const std::string& fallback) {
    auto it = spec.find(key);
    return it != spec.end() && it->is_string() ? it->get<std::string>() : fallback;
  };
  a.device_type = text("device_type", a.driver_device_type);
  a.acc_type = text("acc_type", a.driver_acc_type);
  auto capability = spec.find("acc_capability");
  a.acc_capability = capability != spec.end() ? capability->dump() : "{}";
  auto remote = spec.find("remote");
  a.remotable = remote != spec.end() && *remote == 1;
}

}  // namespace

Service::Service(Store& store, std::vector<std::unique_ptr<Driver>> drivers, std::string host)
    : store_(store),
      drivers_(std::move(drivers)),
      host_(std::move(host)),
      create_writes_(std::make_unique<DocumentBuffer>()) {}

Service::~Service() { StopRescans(); }

// --- reading -----------------------------------------------------------------

Service::Snapshot Service::FindById(int64_t id) const {
  std::shared_lock lock(mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second.accelerator;
}

Service::Snapshot Service::FindByUuid(std::string_view uuid) const {
  std::shared_lock lock(mu_);
  auto it = by_uuid_.find(uuid);
  return it == by_uuid_.end() ? nullptr : by_id_.at(it->second).accelerator;
}

Service::Snapshot Service::FindByName(std::string_view name) const {
  std::shared_lock lock(mu_);
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : by_id_.at(it->second).accelerator;
}

std::vector<Service::Snapshot> Service::List() const {
  std::shared_lock lock(mu_);
  std::vector<Snapshot> all;
  all.reserve(by_id_.size());
  for (const auto& [id, entry] : by_id_) all.push_back(entry.accelerator);
  return all;
}

std::vector<Service::Snapshot> Service::ListAfter(int64_t after_id, size_t limit) const {
  std::shared_lock lock(mu_);
  std::vector<Snapshot> some;
  for (auto it = by_id_.upper_bound(after_id); it != by_id_.end() && some.size() < limit; ++it) {
    some.push_back(it->second.accelerator);
  }
  return some;
}

Result<Service::Locked> Service::Lock(int64_t id) {
  std::shared_ptr<Slot> slot;
  {
    std::shared_lock lock(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return Status::NotFound("no such accelerator");
    slot = it->second.slot;
  }
  if (!slot) {  // the first change of this accelerator: its slot is made now
    std::unique_lock lock(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return Status::NotFound("no such accelerator");
    if (!it->second.slot) it->second.slot = std::make_shared<Slot>();
    slot = it->second.slot;
  }
  Locked locked{slot, std::unique_lock(slot->op), FindById(id)};
  if (!locked.current) return Status::NotFound("no such accelerator");  // removed while we waited
  return locked;
}

Driver* Service::DriverOf(const Accelerator& a) const {
  for (const auto& driver : drivers_) {
    if (!a.driver.empty() && driver->Name() == a.driver) return driver.get();
  }
  return nullptr;
}

// --- publishing --------------------------------------------------------------

void Service::Publish(Accelerator accelerator) {
  accelerator.revision = ++revisions_;
  auto after = std::make_shared<const Accelerator>(std::move(accelerator));
  Snapshot before;
  {
    std::unique_lock lock(mu_);
    Entry& entry = by_id_[after->id];
    before = entry.accelerator;
    if (before) {  // the keys view the old snapshot's strings: view the new one's
      by_uuid_.erase(before->uuid);
      by_name_.erase(before->name);
    }
    by_uuid_.emplace(after->uuid, after->id);
    by_name_.emplace(after->name, after->id);
    entry.accelerator = after;
  }
  if (listener_) listener_(before, after);
}

void Service::Unpublish(const Snapshot& accelerator) {
  {
    std::unique_lock lock(mu_);
    by_uuid_.erase(accelerator->uuid);
    by_name_.erase(accelerator->name);
    by_id_.erase(accelerator->id);
  }
  if (listener_) listener_(accelerator, nullptr);
}

Status Service::Commit(const Accelerator& current, Accelerator next, std::optional<Attr> audited) {
  next.generation = current.generation + 1;
  next.updated_at = Now();
  next.last_error.clear();
  if (Status s = store_.Update(next); !s.ok()) return s;
  if (audited) {
    const AttrInfo& info = AttributeInfo(*audited);
    audit::Changed(current.uuid, info.name, info.render(current), info.render(next));
  }
  Publish(std::move(next));
  return Status::Ok();
}

Status Service::Reject(int64_t id, const std::string& what, Status why) {
  why = why.Prefixed(what);
  if (why.code() == Code::kNotFound) return why;  // nothing left to explain it on
  if (Snapshot current = FindById(id)) audit::Refused(current->uuid, what, why);
  SetLastError(id, why.message());
  return why;
}

void Service::SetLastError(int64_t id, const std::string& text) {
  Snapshot current = FindById(id);
  if (!current || current->last_error == text) return;
  Accelerator next = *current;
  next.last_error = text;
  Publish(std::move(next));
}

// --- creating ----------------------------------------------------------------

Status Service::Insert(Accelerator accelerator, std::string_view how) {
  accelerator.created_at = accelerator.updated_at = Now();
  DeriveColumns(accelerator);
  if (Status s = store_.Insert(accelerator); !s.ok()) return s;
  audit::Changed(accelerator.uuid, how, "", accelerator.name);
  Publish(std::move(accelerator));
  return Status::Ok();
}

Status Service::CreateWithUuid(const std::string& uuid) {
  auto refuse = [&](Status why) {
    audit::Refused(uuid, "mkdir", why);
    return why;
  };
  if (!IsCanonicalUuid(uuid)) {
    return refuse(Status::Invalid("\"" + uuid + "\" is not a lowercase canonical uuid (8-4-4-4-12 hex digits)"));
  }
  if (FindByUuid(uuid)) return refuse(Status::Exists("uuid " + uuid + " exists"));
  if (FindByName(uuid)) return refuse(Status::Exists("name \"" + uuid + "\" is taken"));
  Accelerator a;
  a.uuid = uuid;
  a.name = uuid;
  return Insert(std::move(a), "mkdir");
}

Status Service::WriteCreate(uint64_t offset, std::string_view data) {
  std::lock_guard lock(create_mu_);
  // Like a regular file, create holds what was written last (it reads as empty).
  auto added = create_writes_->Add(offset, data, last_create_body_);
  Status result = added.status();
  if (added.ok()) {
    if (!*added) return Status::Ok();
    last_create_body_ = (*added)->bytes;
    if ((*added)->repeat) return Status::Ok();
    result = CreateFrom((*added)->document);
    if (!result.ok()) create_writes_->Drop();  // the same body may be retried
  }
  if (result.ok()) return result;
  audit::Refused("", "create", result.Prefixed("create"));
  return result.Prefixed("create");
}

Status Service::CreateFrom(const Json& body) {
  auto request = ParseCreateRequest(body);
  if (!request.ok()) return request.status();
  Accelerator a;
  a.uuid = request->uuid.value_or(RandomUuid());
  a.name = request->name;
  if (FindByUuid(a.uuid)) return Status::Exists("uuid " + a.uuid + " exists");
  if (FindByName(a.name)) return Status::Exists("name \"" + a.name + "\" is taken");
  return Insert(std::move(a), "create");
}

// --- writing files -----------------------------------------------------------

Status Service::Write(int64_t id, Attr attr, uint64_t offset, std::string_view data) {
  const WriteKind kind = AttributeInfo(attr).write;
  if (kind == WriteKind::kReadOnly)
    return Status::AccessDenied(std::string(AttributeInfo(attr).name) + " is read-only");
  if (kind == WriteKind::kDocument) {
    return ChangeSpec(id, attr,
                      [&](DocumentBuffer& buffer, std::string_view old) { return buffer.Add(offset, data, old); });
  }
  auto locked = Lock(id);
  if (!locked.ok()) return locked.status();
  Status result = WriteText(*locked->current, attr, data);
  return result.ok() ? result : Reject(id, AttributeInfo(attr).name, result);
}

Status Service::Truncate(int64_t id, Attr attr, uint64_t size) {
  if (AttributeInfo(attr).write != WriteKind::kDocument) return Status::Ok();
  return ChangeSpec(id, attr, [&](DocumentBuffer& buffer, std::string_view old) { return buffer.Truncate(size, old); });
}

template <typename Change>
Status Service::ChangeSpec(int64_t id, Attr attr, Change change) {
  auto locked = Lock(id);
  if (!locked.ok()) return locked.status();
  const Accelerator& current = *locked->current;
  DocumentBuffer& buffer = locked->slot->spec_writes;
  auto outcome = change(buffer, AttributeInfo(attr).render(current));
  Status result = outcome.status();
  if (outcome.ok()) result = *outcome ? ApplySpec(current, (*outcome)->bytes, (*outcome)->document) : Status::Ok();
  if (!result.ok()) return Reject(id, AttributeInfo(attr).name, result);
  // No close(2) can tell the writer of an incomplete document: the error file does.
  const std::string waiting =
      std::string(AttributeInfo(attr).name) + ": waiting for the rest, the value is unchanged: ";
  if (auto pending = buffer.Pending()) {
    SetLastError(id, waiting + pending->message());
  } else if (Snapshot now = FindById(id); now && now->last_error.rfind(waiting, 0) == 0) {
    SetLastError(id, "");
  }
  return result;
}

Status Service::Replace(int64_t id, Attr attr, const std::string& content, const std::string& source) {
  const AttrInfo& info = AttributeInfo(attr);
  const std::string what = std::string(info.name) + " (renamed from " + source + ")";
  if (info.write == WriteKind::kReadOnly) return Reject(id, what, Status::AccessDenied("the file is read-only"));
  auto locked = Lock(id);
  if (!locked.ok()) return locked.status();
  Status result = info.write == WriteKind::kText ? WriteText(*locked->current, attr, content)
                                                 : ReplaceSpec(*locked->current, content);
  if (result.code() == Code::kTooLarge) result = Status::Invalid(result.message());
  return result.ok() ? result : Reject(id, what, result);
}

Status Service::ReplaceSpec(const Accelerator& current, const std::string& content) {
  if (content.size() > kMaxDocumentBytes) {
    return Status::TooLarge("document of " + std::to_string(content.size()) + " bytes, at most " +
                            std::to_string(kMaxDocumentBytes) + " are allowed");
  }
  ParsedDocument parsed = ParseJsonDocument(content);
  if (parsed.state == DocumentState::kIncomplete) return parsed.error.Prefixed("incomplete JSON document");
  if (parsed.state == DocumentState::kInvalid) return parsed.error;
  return ApplySpec(current, content, parsed.value);
}

Status Service::WriteText(const Accelerator& current, Attr attr, std::string_view data) {
  if (data.size() > kMaxTextBytes) {
    return Status::TooLarge("value of " + std::to_string(data.size()) + " bytes, at most " +
                            std::to_string(kMaxTextBytes) + " are allowed");
  }
  return attr == Attr::kName ? ApplyName(current, data) : ApplyAttach(current, data);
}

Status Service::ApplyName(const Accelerator& current, std::string_view bytes) {
  const std::string name(StripNewline(bytes));
  if (Status s = ValidateName(name); !s.ok()) return s;
  if (name == current.name && bytes == AttributeInfo(Attr::kName).render(current)) return Status::Ok();
  if (name != current.name && FindByName(name)) return Status::Exists("name \"" + name + "\" is taken");
  Accelerator next = current;
  next.name = name;
  next.name_bytes = std::string(bytes);
  return Commit(current, std::move(next), Attr::kName);
}

Status Service::ApplySpec(const Accelerator& current, const std::string& bytes, const Json& spec) {
  if (Status s = ValidateSpec(spec); !s.ok()) return s;
  Accelerator next = current;
  next.spec = spec.dump();
  next.spec_bytes = bytes;
  if (next.spec == current.spec && next.spec_bytes == current.spec_bytes) return Status::Ok();
  DeriveColumns(next);
  return Commit(current, std::move(next), Attr::kSpec);
}

Status Service::ApplyAttach(const Accelerator& current, std::string_view bytes) {
  auto parsed = ParseAttach(bytes);
  if (!parsed.ok()) return parsed.status();
  if (!*parsed) return Detach(current);
  AttachTarget target = **parsed;
  target.spec = current.spec;
  Accelerator next = current;
  next.attachment = target.ToString();
  next.attach_bytes = std::string(bytes);
  if (current.attachment == next.attachment) {
    return next.attach_bytes == current.attach_bytes ? Status::Ok() : Commit(current, std::move(next), Attr::kAttach);
  }
  if (!current.attachment.empty()) {
    return Status::Busy("attached to " + current.attachment + "; detach it first (echo > attach)");
  }
  if (current.state == State::kOffline) {
    return Status::NoDevice("offline: driver " + current.driver + " no longer reports it");
  }
  Driver* driver = DriverOf(current);
  if (driver) {
    auto handle = driver->Attach(current.driver_address, target, next.driver_memory);
    if (!handle.ok()) return handle.status().Prefixed("driver " + driver->Name());
    next.attach_handle = *handle;
    RefreshFacts(*driver, next);
  }
  next.state = State::kAttached;
  std::string memory = next.driver_memory;
  Status committed = Commit(current, std::move(next), Attr::kAttach);
  if (!committed.ok() && driver) (void)driver->Detach(current.driver_address, memory);  // roll the host side back
  return committed;
}

Status Service::Detach(const Accelerator& current) {
  if (current.attachment.empty()) return Status::Ok();
  Accelerator next = current;
  Driver* driver = current.state == State::kOffline ? nullptr : DriverOf(current);
  if (driver) {
    if (Status s = driver->Detach(current.driver_address, next.driver_memory); !s.ok()) {
      next.state = State::kError;
      RefreshFacts(*driver, next);
      (void)Commit(current, std::move(next));
      return s.Prefixed("driver " + driver->Name());
    }
    RefreshFacts(*driver, next);
  }
  next.attachment.clear();
  next.attach_bytes.reset();
  next.attach_handle.clear();
  next.state = current.state == State::kOffline ? State::kOffline : State::kAvailable;
  return Commit(current, std::move(next), Attr::kAttach);
}

// --- removing ----------------------------------------------------------------

Status Service::Remove(int64_t id) {
  auto locked = Lock(id);
  if (!locked.ok()) return locked.status();
  const Accelerator& current = *locked->current;
  if (!current.attachment.empty()) {
    return Reject(id, "rmdir", Status::Busy("attached to " + current.attachment + "; detach it first (echo > attach)"));
  }
  if (!current.driver.empty() && current.state != State::kOffline) {
    return Reject(id, "rmdir",
                  Status::Busy("still reported by driver " + current.driver + "; only offline records can be removed"));
  }
  if (Status s = store_.Remove(id); !s.ok()) return s;
  Unpublish(locked->current);
  audit::Changed(current.uuid, "rmdir", current.name, "");
  return Status::Ok();
}

// --- reconciling with drivers ------------------------------------------------

Status Service::Start() {
  {
    const size_t count = store_.Count();
    std::unique_lock lock(mu_);
    by_uuid_.reserve(count);
    by_name_.reserve(count);
  }
  if (Status s = store_.Load([&](Accelerator a) { Publish(std::move(a)); }); !s.ok()) return s;
  return Rescan();
}

Status Service::Rescan() {
  std::lock_guard rescanning(rescan_mu_);
  std::set<int64_t> reported;
  for (const auto& driver : drivers_) {
    auto devices = driver->Discover();
    RecordHealth(*driver, devices);
    if (!devices.ok()) continue;
    for (const DiscoveredDevice& device : *devices) {
      if (Status s = Reconcile(*driver, device, reported); !s.ok()) return s;
    }
  }
  const std::vector<Snapshot> all = List();
  for (const Snapshot& a : all) {
    if (a->driver.empty() || reported.count(a->id) || a->state == State::kOffline) continue;
    auto locked = Lock(a->id);
    if (!locked.ok() || locked->current->state == State::kOffline) continue;
    Accelerator next = *locked->current;
    next.state = State::kOffline;
    if (Status s = Commit(*locked->current, std::move(next)); !s.ok()) return s;
    spdlog::warn("accelerator {}: offline: driver {} does not report {}", a->uuid, a->driver, a->driver_address);
  }
  spdlog::info("{} accelerators, {} reported by drivers", all.size(), reported.size());
  return Status::Ok();
}

void Service::RecordHealth(Driver& driver, const Result<std::vector<DiscoveredDevice>>& devices) {
  Json problems = driver.Health();
  if (!devices.ok()) {
    spdlog::error("driver {}: discovery failed, its accelerators go offline: {}", driver.Name(),
                  devices.status().message());
    problems.insert(problems.begin(), "discovery failed: " + devices.status().message());
  }
  const char* state = !devices.ok() ? "failed" : problems.empty() ? "ok" : "degraded";
  std::lock_guard lock(report_mu_);
  drivers_report_[driver.Name()] = {{"state", state},
                                    {"devices", devices.ok() ? devices->size() : 0},
                                    {"rescanned_at", Now()},
                                    {"problems", problems}};
}

// One reported device: refreshed if known, adopted if new.
Status Service::Reconcile(Driver& driver, const DiscoveredDevice& device, std::set<int64_t>& reported) {
  if (Snapshot known = FindByUuid(device.uuid)) {
    auto locked = Lock(known->id);
    if (!locked.ok()) return Status::Ok();  // removed meanwhile: the next rescan adopts it
    reported.insert(known->id);
    return Refresh(driver, *locked->current, device);
  }
  Status adopted = Adopt(driver, device);
  if (adopted.code() == Code::kExists) {  // made by hand with this uuid meanwhile
    spdlog::warn("driver {}: {} not adopted: {}", driver.Name(), device.address, adopted.message());
    return Status::Ok();
  }
  if (!adopted.ok()) return adopted;
  reported.insert(FindByUuid(device.uuid)->id);
  return Status::Ok();
}

std::string Service::DriversReport() const {
  std::lock_guard lock(report_mu_);
  return RenderJson(drivers_report_);
}

Status Service::WriteRescan(std::string_view data) {
  if (StripNewline(data) != "1") return Status::Invalid("rescan: write 1 to rescan the drivers");
  return Rescan().Prefixed("rescan");
}

void Service::StartRescans(std::chrono::milliseconds interval) {
  if (interval.count() <= 0 || rescanner_.joinable()) return;
  rescanner_ = std::thread([this, interval] {
    std::unique_lock lock(rescanner_mu_);
    while (!rescanner_cv_.wait_for(lock, interval, [this] { return stop_rescans_; })) {
      lock.unlock();
      if (Status s = Rescan(); !s.ok()) spdlog::error("periodic rescan failed: {}", s.message());
      lock.lock();
    }
  });
}

void Service::StopRescans() {
  {
    std::lock_guard lock(rescanner_mu_);
    stop_rescans_ = true;
  }
  rescanner_cv_.notify_all();
  if (rescanner_.joinable()) rescanner_.join();
}

namespace {

// What a driver says about a device, taken into its record.
void TakeDriverFacts(const Driver& driver, const DiscoveredDevice& device, Accelerator& a) {
  a.driver = driver.Name();
  a.driver_address = device.address;
  a.driver_device_type = device.device_type;
  a.driver_acc_type = device.acc_type;
  a.vendor_id = device.vendor_id;
  a.product_id = device.product_id;
  Json facts = Json::object();
  auto fact = [&](const char* key, const std::string& value) {
    if (!value.empty()) facts[key] = value;
  };
  fact("kernel_driver", device.kernel_driver);
  fact("model", device.model);
  if (device.numa_node >= 0) facts["numa_node"] = device.numa_node;
  fact("iommu_group", device.iommu_group);
  fact("physfn", device.physfn);
  if (!device.virtfns.empty()) facts["virtfns"] = device.virtfns;
  if (device.sriov_totalvfs >= 0) facts["sriov_totalvfs"] = device.sriov_totalvfs;
  if (device.sriov_numvfs >= 0) facts["sriov_numvfs"] = device.sriov_numvfs;
  fact("subsystem_id", device.subsystem_id);
  for (const auto& [type, offer] : device.mdev_types) {
    facts["mdev_types"][type] = {{"name", offer.name}, {"available_instances", offer.available_instances}};
  }
  a.host_facts = facts.dump();
  DeriveColumns(a);
}

}  // namespace

// After an attach or detach: the device's facts as the driver sees them now.
void Service::RefreshFacts(Driver& driver, Accelerator& a) {
  auto device = driver.Describe(a.driver_address);
  if (device.ok()) TakeDriverFacts(driver, *device, a);
}

Status Service::Adopt(const Driver& driver, const DiscoveredDevice& device) {
  Accelerator a;
  a.uuid = device.uuid;
  a.name = UnusedName(device.name);
  TakeDriverFacts(driver, device, a);
  return Insert(std::move(a), "adopted by driver " + driver.Name());
}

// A known device reported again: take the driver's facts, come back online,
// and restore an attachment the database remembers.
Status Service::Refresh(Driver& driver, const Accelerator& current, const DiscoveredDevice& device) {
  Accelerator next = current;
  TakeDriverFacts(driver, device, next);
  next.state = current.attachment.empty() ? State::kAvailable : State::kAttached;
  if (current.attachment.empty()) {
    // Detached in the database: make the host agree (a crash may have left
    // the device half attached).
    if (Status s = driver.Detach(device.address, next.driver_memory); !s.ok()) {
      spdlog::error("accelerator {}: returning it to its detached state failed: {}", current.uuid, s.message());
    }
  } else {
    auto target = ParseAttach(current.attachment);
    AttachTarget restored = **target;
    restored.spec = current.spec;
    auto handle = driver.Attach(device.address, restored, next.driver_memory);
    if (handle.ok()) {
      next.attach_handle = *handle;
    } else {
      next.state = State::kError;
      spdlog::error("accelerator {}: restoring {} failed: {}", current.uuid, current.attachment,
                    handle.status().message());
    }
  }
  RefreshFacts(driver, next);
  auto facts = [](const Accelerator& a) {
    return std::tie(a.state, a.driver, a.driver_address, a.driver_device_type, a.driver_acc_type, a.device_type,
                    a.acc_type, a.vendor_id, a.product_id, a.attach_handle, a.host_facts, a.driver_memory);
  };
  const bool same = facts(next) == facts(current);
  return same ? Status::Ok() : Commit(current, std::move(next));
}

std::string Service::UnusedName(const std::string& wanted) const {
  std::string name = wanted;
  for (int n = 2; FindByName(name); ++n) name = wanted + "-" + std::to_string(n);
  return name;
}

}  // namespace cyborgfs
