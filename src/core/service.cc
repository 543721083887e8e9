// The accelerator service. The lifecycle it follows is cyborgfs/lifecycle.h:
// every state change below goes through Transition() and one Commit().
//
// Lock order: rescan_mu_, then op locks (a rescan takes several, in id
// order; a request one), then mu_ (the indexes), then the Store's.
#include "cyborgfs/service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <set>
#include <tuple>
#include <unordered_set>

#include "cyborgfs/audit.h"
#include "cyborgfs/lifecycle.h"
#include "cyborgfs/records.h"
#include "cyborgfs/values.h"

namespace cyborgfs {

struct Service::Slot {
  std::mutex op;  // held for every change of this accelerator
};

namespace {

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

// The fleet's accelerator request `request` acts for, or "".
std::string HolderOf(const Service::Request& request) {
  return request.caller.kind == Caller::Kind::kFleetRequest ? request.caller.address : "";
}

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
    : store_(store), drivers_(std::move(drivers)), host_(std::move(host)) {}

void Service::AddListener(const void* origin, Listener listener) {
  listeners_.emplace_back(origin, std::move(listener));
}

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

std::shared_ptr<const Service::Listing> Service::ListDocument() const {
  std::lock_guard lock(listing_mu_);
  const uint64_t revision = Revision();  // before the list: a change meanwhile is rendered again next time
  if (!listing_ || listing_->revision != revision) {
    listing_ = std::make_shared<const Listing>(Listing{revision, Now(), ListBody(List())});
  }
  return listing_;
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

Service::Snapshot Service::Publish(Accelerator accelerator, const void* origin) {
  Snapshot before;
  Snapshot after;
  {
    std::unique_lock lock(mu_);
    Entry& entry = by_id_[accelerator.id];
    before = entry.accelerator;
    if (before && accelerator.generation < before->generation) {
      spdlog::error("internal error: accelerator {}: a snapshot of generation {} was not published over generation {}",
                    accelerator.uuid, accelerator.generation, before->generation);
      return nullptr;
    }
    accelerator.revision = ++revisions_;
    after = std::make_shared<const Accelerator>(std::move(accelerator));
    if (before) {  // the keys view the old snapshot's strings: view the new one's
      by_uuid_.erase(before->uuid);
      by_name_.erase(before->name);
    }
    by_uuid_.emplace(after->uuid, after->id);
    by_name_.emplace(after->name, after->id);
    entry.accelerator = after;
  }
  Tell(origin, before, after);
  return after;
}

void Service::Unpublish(const Snapshot& accelerator, const void* origin) {
  {
    std::unique_lock lock(mu_);
    by_uuid_.erase(accelerator->uuid);
    by_name_.erase(accelerator->name);
    by_id_.erase(accelerator->id);
    ++revisions_;
  }
  Tell(origin, accelerator, nullptr);
}

void Service::Tell(const void* origin, const Snapshot& before, const Snapshot& after) const {
  for (const auto& [listener_origin, listener] : listeners_) {
    if (!origin || listener_origin != origin) listener(before, after);
  }
}

void Service::Prepare(const Accelerator& current, Accelerator& next) const {
  next.generation = current.generation + 1;
  next.updated_at = Now();
  next.last_error.clear();
#ifndef NDEBUG
  if (Status s = CheckInvariants(next); !s.ok()) {
    spdlog::critical("{}", s.message());
    std::abort();
  }
#endif
}

namespace {

// The first file of the table whose content differs from `before` to
// `after` (the error file aside: it is not state).
std::optional<Attr> FirstChange(const Accelerator& before, const Accelerator& after) {
  for (const AttrInfo& info : Attributes()) {
    if (info.attr != Attr::kError && info.render(before) != info.render(after)) return info.attr;
  }
  return std::nullopt;
}

void AuditChange(const Caller& who, const Accelerator& before, const Accelerator& after, std::optional<Attr> file) {
  if (!file) file = FirstChange(before, after);
  if (!file) return;
  const AttrInfo& info = AttributeInfo(*file);
  audit::Changed(who, before.uuid, info.name, info.render(before), info.render(after));
}

}  // namespace

Result<Service::Change> Service::Commit(const Accelerator& current, Accelerator next, const Request& request,
                                        std::optional<Attr> audited) {
  Prepare(current, next);
  if (Status s = store_.Update(next); !s.ok()) return s;
  AuditChange(request.caller, current, next, audited);
  Change change;
  change.before = FindById(current.id);
  for (const AttrInfo& info : Attributes()) {
    if (info.render(current) != info.render(next)) change.files.push_back(info.attr);
  }
  change.after = Publish(std::move(next), request.origin);
  return change;
}

Status Service::Reject(const Locked& locked, const std::string& what, Status why, const Caller& who) {
  why = why.Prefixed(what);
  audit::Refused(who, locked.current->uuid, what, why);
  SetLastError(locked, why.message());
  return why;
}

Status Service::Refuse(int64_t id, Status why, const Request& request) {
  auto locked = Lock(id);
  if (!locked.ok()) return why.Prefixed(request.label);
  return Reject(*locked, request.label, std::move(why), request.caller);
}

void Service::Explain(int64_t id, const std::string& text) {
  if (auto locked = Lock(id); locked.ok()) SetLastError(*locked, text);
}

void Service::SetLastError(const Locked& locked, const std::string& text) {
  Snapshot current = FindById(locked.current->id);  // the latest: changes of it wait for our lock
  if (!current || current->last_error == text) return;
  Accelerator next = *current;
  next.last_error = text;
  Publish(std::move(next));
}

// --- creating ----------------------------------------------------------------

Result<Service::Change> Service::Create(const CreateRequest& body, const Request& request) {
  const std::string what = request.label.empty() ? "create" : request.label;
  Accelerator a;
  a.uuid = body.uuid.value_or(RandomUuid());
  a.name = body.name;
  auto refuse = [&](Status why) {
    audit::Refused(request.caller, body.uuid.value_or(""), what, why);
    return why;
  };
  if (Status s = ValidateName(a.name); !s.ok()) return refuse(s.Prefixed("\"name\""));
  if (FindByUuid(a.uuid)) return refuse(Status::Exists("uuid " + a.uuid + " exists"));
  if (FindByName(a.name)) return refuse(Status::Exists("name \"" + a.name + "\" is taken"));
  a.created_at = a.updated_at = Now();
  DeriveColumns(a);
  if (Status s = store_.Insert(a); !s.ok()) return refuse(s);  // a race lost: the store's constraints say so
  audit::Changed(request.caller, a.uuid, what, "", a.name);
  Change change;
  change.after = Publish(std::move(a), request.origin);
  for (const AttrInfo& info : Attributes()) change.files.push_back(info.attr);
  return change;
}

// --- changing an accelerator ---------------------------------------------------

template <typename Apply>
Result<Service::Change> Service::Modify(int64_t id, const char* what, const Request& request, Apply apply) {
  auto locked = Lock(id);
  if (!locked.ok()) return locked.status();
  Result<Change> result = apply(*locked);
  if (result.ok()) return result;
  return Reject(*locked, request.label.empty() ? what : request.label, result.status(), request.caller);
}

Result<Service::Change> Service::SetSpec(int64_t id, const Json& spec, std::optional<std::string> bytes,
                                         std::optional<int64_t> expected_generation, const Request& request) {
  return Modify(id, "spec", request, [&](const Locked& locked) -> Result<Change> {
    const Accelerator& current = *locked.current;
    if (expected_generation && *expected_generation != current.generation) {
      return Status::Busy("another request changed the accelerator meanwhile (generation " +
                          std::to_string(current.generation) + ", not " + std::to_string(*expected_generation) + ")");
    }
    if (Status s = ValidateSpec(spec); !s.ok()) return s;
    Accelerator next = current;
    next.spec = spec.dump();
    next.spec_bytes = std::move(bytes);
    if (next.spec == current.spec && next.spec_bytes == current.spec_bytes) return Unchanged(locked.current);
    DeriveColumns(next);
    return Commit(current, std::move(next), request, Attr::kSpec);
  });
}

Result<Service::Change> Service::Rename(int64_t id, const std::string& name, std::optional<std::string> bytes,
                                        const Request& request) {
  return Modify(id, "name", request, [&](const Locked& locked) -> Result<Change> {
    const Accelerator& current = *locked.current;
    if (Status s = ValidateName(name); !s.ok()) return s;
    if (bytes == name + "\n") bytes.reset();  // the canonical text: nothing to keep
    if (name == current.name && bytes == current.name_bytes) return Unchanged(locked.current);
    if (name != current.name && FindByName(name)) return Status::Exists("name \"" + name + "\" is taken");
    Accelerator next = current;
    next.name = name;
    next.name_bytes = std::move(bytes);
    return Commit(current, std::move(next), request, Attr::kName);
  });
}

Result<Service::Change> Service::Attach(int64_t id, const AttachTarget& target, std::optional<std::string> bytes,
                                        const Request& request) {
  return Modify(id, "attach", request,
                [&](const Locked& locked) { return ApplyAttach(*locked.current, target, std::move(bytes), request); });
}

Result<Service::Change> Service::SetMaintenance(int64_t id, bool on, const Request& request) {
  return Modify(id, "maintenance", request, [&](const Locked& locked) -> Result<Change> {
    const Accelerator& current = *locked.current;
    if (current.maintenance == on) return Unchanged(locked.current);
    Accelerator next = current;
    next.maintenance = on;
    return Commit(current, std::move(next), request, Attr::kMaintenance);
  });
}

Result<Service::Change> Service::Detach(int64_t id, const Request& request) {
  return Modify(id, "attach", request, [&](const Locked& locked) { return ApplyDetach(*locked.current, request); });
}

// An attach to the target the record has is a no-op, unless the record is in
// the error state: then it is attached again through the driver (a failed
// restore retried, a pending detach cancelled).
Result<Service::Change> Service::ApplyAttach(const Accelerator& current, const AttachTarget& wanted,
                                             std::optional<std::string> bytes, const Request& request) {
  AttachTarget target = wanted;
  target.spec = current.spec;
  if (bytes == target.ToString() + "\n") bytes.reset();  // the canonical text: nothing to keep
  Accelerator next = current;
  next.attach_bytes = std::move(bytes);
  const bool same = current.attachment == target.ToString();
  const std::string holder = HolderOf(request);
  if (!holder.empty() && !current.held_by.empty() && current.held_by != holder) {
    return Status::Busy("held by accelerator request " + current.held_by);
  }
  if (!holder.empty()) next.held_by = holder;  // an attachment it has already is its from now on
  if (same && current.state != State::kError) {
    if (next.attach_bytes == current.attach_bytes && next.held_by == current.held_by) {
      return Unchanged(FindById(current.id));
    }
    return Commit(current, std::move(next), request, Attr::kAttach);
  }
  if (!same && !current.attachment.empty()) {
    return Status::Busy("attached to " + current.attachment + "; detach it first (echo > attach)");
  }
  if (current.maintenance && !same) {
    return Status::Busy("in maintenance: out of service until it is put back (echo 0 > maintenance)");
  }
  if (current.state == State::kOffline) {
    return Status::NoDevice("offline: driver " + current.driver + " no longer reports it");
  }
  Driver* driver = DriverOf(current);
  std::string handle;
  if (driver) {
    auto attached = driver->Attach(current.driver_address, target, next.driver_memory);
    if (!attached.ok()) return attached.status().Prefixed("driver " + driver->Name());
    handle = *attached;
  }
  if (Status s = Transition(next, Event::kAttach, &target, handle); !s.ok()) return s;
  if (driver) RefreshFacts(*driver, next);  // judged as attached
  std::string memory = next.driver_memory;
  auto committed = Commit(current, std::move(next), request, Attr::kAttach);
  if (!committed.ok() && driver && !same) (void)driver->Detach(current.driver_address, memory);  // host side back
  return committed;
}

// A detach the driver fails is committed as the error state (detaching: a
// rescan retries it) and returned; the attachment is kept until it works.
Result<Service::Change> Service::ApplyDetach(const Accelerator& current, const Request& request) {
  if (current.attachment.empty()) return Unchanged(FindById(current.id));
  if (!current.held_by.empty() && HolderOf(request) != current.held_by) {
    return Status::Busy("held by accelerator request " + current.held_by + "; delete the request (DELETE " +
                        "/fleet/accelerator_requests/" + current.held_by + ")");
  }
  Accelerator next = current;
  Driver* driver = current.state == State::kOffline ? nullptr : DriverOf(current);
  if (driver) {
    Status detached = driver->Detach(current.driver_address, next.driver_memory);
    if (!detached.ok()) {
      detached = detached.Prefixed("driver " + driver->Name());
      if (Status s = Transition(next, Event::kDetachFailed); !s.ok()) return s;
      RefreshFacts(*driver, next);
      if (auto c = Commit(current, std::move(next), request); !c.ok()) {
        spdlog::error("accelerator {}: recording the failed detach failed: {}", current.uuid, c.status().message());
        return Status::IoError(detached.message() + "; recording it failed too: " + c.status().message());
      }
      return detached;
    }
  }
  if (Status s = Transition(next, Event::kDetach); !s.ok()) return s;
  if (driver) RefreshFacts(*driver, next);  // judged as detached
  return Commit(current, std::move(next), request, Attr::kAttach);
}

// --- removing ----------------------------------------------------------------

Result<Service::Change> Service::Remove(int64_t id, const Request& request) {
  return Modify(id, "rmdir", request, [&](const Locked& locked) -> Result<Change> {
    const Accelerator& current = *locked.current;
    if (!current.attachment.empty()) {
      return Status::Busy("attached to " + current.attachment + "; detach it first (echo > attach)");
    }
    if (!current.driver.empty() && current.state != State::kOffline) {
      return Status::Busy("still reported by driver " + current.driver + "; only offline records can be removed");
    }
    if (Status s = store_.Remove(id); !s.ok()) return s;
    Unpublish(locked.current, request.origin);
    audit::Changed(request.caller, current.uuid, request.label.empty() ? "rmdir" : request.label, current.name, "");
    Change change;
    change.before = locked.current;
    for (const AttrInfo& info : Attributes()) change.files.push_back(info.attr);
    return change;
  });
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
  return Rescan({});
}

namespace {

std::optional<AttachTarget> TargetOf(const Accelerator& a);

// What a driver says about a device, taken into its record, with its health
// judged against what the record wants of it. The columns derived from the
// spec are derived again only if the driver's types changed.
void TakeDriverFacts(const Driver& driver, const DiscoveredDevice& device, Accelerator& a) {
  const bool types_changed = a.driver_device_type != device.device_type || a.driver_acc_type != device.acc_type;
  a.driver = driver.Name();
  a.driver_address = device.address;
  a.driver_device_type = device.device_type;
  a.driver_acc_type = device.acc_type;
  a.vendor_id = device.vendor_id;
  a.product_id = device.product_id;
  a.facts = device.facts;
  const auto target = a.detaching ? std::nullopt : TargetOf(a);
  driver.JudgeHealth(device.address, target ? &*target : nullptr, a.driver_memory, a.facts);
  if (types_changed) DeriveColumns(a);
}

// Everything a record stores, but the bookkeeping of changes.
auto Stored(const Accelerator& a) {
  return std::tie(a.uuid, a.name, a.spec, a.device_type, a.acc_type, a.acc_capability, a.vendor_id, a.product_id,
                  a.remotable, a.state, a.attachment, a.attach_handle, a.detaching, a.driver, a.driver_address,
                  a.driver_device_type, a.driver_acc_type, a.facts, a.driver_memory, a.name_bytes, a.spec_bytes,
                  a.attach_bytes);
}

// A transition the plan's logic makes allowed: a refusal is a bug, said in
// the log (and fatal in debug builds); the record stays as it was.
void Expect(Accelerator& record, Event event, const AttachTarget* target = nullptr, const std::string& handle = {}) {
  if (Status s = Transition(record, event, target, handle); !s.ok()) {
    spdlog::critical("internal error: accelerator {}: {}", record.uuid, s.message());
#ifndef NDEBUG
    std::abort();
#endif
  }
}

// The attachment of a record as a target for its driver.
std::optional<AttachTarget> TargetOf(const Accelerator& a) {
  auto parsed = ParseAttach(a.attachment);
  if (!parsed.ok() || !*parsed) return std::nullopt;
  AttachTarget target = **parsed;
  target.spec = a.spec;
  return target;
}

}  // namespace

Service::RescanPlan::Step Service::StepFor(const Accelerator& record, Driver& driver,
                                           const DiscoveredDevice& device) const {
  using Step = RescanPlan::Step;
  const auto target = TargetOf(record);
  if (!target) return driver.Agrees(device, nullptr, record.driver_memory) ? Step::kNone : Step::kRepair;
  if (record.detaching)
    return driver.Agrees(device, nullptr, record.driver_memory) ? Step::kSettle : Step::kRetryDetach;
  if (!driver.Agrees(device, &*target, record.driver_memory)) return Step::kRestore;
  return record.state == State::kError ? Step::kSettle : Step::kNone;
}

Accelerator Service::Settled(const Accelerator& current, const Driver& driver, const DiscoveredDevice& device,
                             RescanPlan::Step step) const {
  Accelerator next = current;
  TakeDriverFacts(driver, device, next);
  Expect(next, Event::kReported);
  if (step == RescanPlan::Step::kSettle) {
    if (next.detaching) {
      Expect(next, Event::kDetach);
    } else if (const auto target = TargetOf(next)) {
      Expect(next, Event::kAttach, &*target, next.attach_handle);
    }
  }
  return next;
}

Service::RescanPlan Service::PlanRescan() {
  RescanPlan plan;
  std::unordered_map<std::string_view, Snapshot> records;
  const std::vector<Snapshot> all = List();
  plan.records = all.size();
  records.reserve(all.size());
  for (const Snapshot& a : all) records.emplace(a->uuid, a);
  std::unordered_set<int64_t> reported;
  std::set<std::string> names;  // taken by the adoptions planned so far
  for (const auto& driver : drivers_) {
    auto devices = driver->Discover();
    RecordHealth(*driver, devices);
    if (!devices.ok()) continue;
    plan.reported += devices->size();
    for (DiscoveredDevice& device : *devices) {
      auto known = records.find(device.uuid);
      if (known == records.end()) {
        std::string name = UnusedName(device.name, names);
        names.insert(name);
        plan.adopt.push_back({driver.get(), std::move(device), std::move(name)});
        continue;
      }
      const Snapshot& record = known->second;
      if (record->driver.empty()) {  // made by hand with this uuid
        spdlog::warn("driver {}: {} not adopted: uuid {} exists", driver->Name(), device.address, device.uuid);
        continue;
      }
      reported.insert(record->id);
      const RescanPlan::Step step = StepFor(*record, *driver, device);
      if (step == RescanPlan::Step::kNone && Stored(Settled(*record, *driver, device, step)) == Stored(*record)) {
        continue;
      }
      plan.update.push_back({record, driver.get(), std::move(device), step});
    }
  }
  for (const Snapshot& a : all) {
    if (!a->driver.empty() && a->state != State::kOffline && !reported.count(a->id)) plan.offline.push_back(a);
  }
  return plan;
}

void Service::RunHostStep(const RescanPlan::Update& update, Accelerator& next) {
  using Step = RescanPlan::Step;
  Driver& driver = *update.driver;
  const std::string& address = update.device.address;
  const std::string& uuid = next.uuid;
  switch (update.step) {
    case Step::kNone:
    case Step::kSettle:
      return;
    case Step::kRestore: {
      const auto target = TargetOf(next);
      auto handle = driver.Attach(address, *target, next.driver_memory);
      if (handle.ok()) {
        Expect(next, Event::kAttach, &*target, *handle);
      } else {
        spdlog::error("accelerator {}: restoring {} failed: {}", uuid, next.attachment, handle.status().message());
        Expect(next, Event::kRestoreFailed);
      }
      break;
    }
    case Step::kRepair:
      if (Status s = driver.Detach(address, next.driver_memory); !s.ok()) {
        spdlog::error("accelerator {}: returning it to its detached state failed: {}", uuid, s.message());
      }
      break;
    case Step::kRetryDetach:
      if (Status s = driver.Detach(address, next.driver_memory); s.ok()) {
        Expect(next, Event::kDetach);
      } else {
        spdlog::error("accelerator {}: retrying the detach failed: {}", uuid, s.message());
        Expect(next, Event::kDetachFailed);
      }
      break;
  }
  RefreshFacts(driver, next);
}

Status Service::ApplyPlan(const RescanPlan& plan, const Caller& who) {
  using Step = RescanPlan::Step;
  // The records the plan changes, locked in id order.
  std::vector<int64_t> ids;
  for (const auto& u : plan.update) ids.push_back(u.current->id);
  for (const auto& a : plan.offline) ids.push_back(a->id);
  std::sort(ids.begin(), ids.end());
  std::map<int64_t, Locked> locked;
  for (int64_t id : ids) {
    if (auto l = Lock(id); l.ok()) locked.emplace(id, std::move(*l));
  }
  // Still as planned, or left for the next rescan (a request changed it).
  auto unchanged = [&](const Snapshot& planned) -> const Accelerator* {
    auto it = locked.find(planned->id);
    if (it == locked.end() || it->second.current->generation != planned->generation) return nullptr;
    return it->second.current.get();
  };
  // Each change is audited from what the host was (a host step's line says
  // what the step did: the state it gave, else the kernel driver it bound),
  // and committed if the record changes.
  struct Change {
    const Accelerator* current;
    Accelerator next;
    Accelerator audited_from;
  };
  std::vector<Change> changes;
  std::vector<std::pair<Accelerator, Accelerator>> host_only;  // steps that changed no record
  for (const auto& update : plan.update) {
    const Accelerator* current = unchanged(update.current);
    if (!current) continue;
    Accelerator observed = Settled(*current, *update.driver, update.device, update.step);
    Accelerator next = observed;
    RunHostStep(update, next);
    const bool host_step = update.step != Step::kNone && update.step != Step::kSettle;
    const bool state_changed = next.state != current->state || next.attachment != current->attachment;
    Accelerator from = host_step && !state_changed ? std::move(observed) : *current;
    if (Stored(next) != Stored(*current)) {
      changes.push_back({current, std::move(next), std::move(from)});
    } else if (host_step) {
      host_only.emplace_back(std::move(from), std::move(next));
    }
  }
  for (const auto& record : plan.offline) {
    const Accelerator* current = unchanged(record);
    if (!current) continue;
    Accelerator next = *current;
    Expect(next, Event::kUnreported);
    spdlog::warn("accelerator {}: offline: driver {} does not report {}", current->uuid, current->driver,
                 current->driver_address);
    changes.push_back({current, std::move(next), *current});
  }
  for (const auto& [from, to] : host_only) AuditChange(who, from, to, std::nullopt);
  std::vector<Accelerator> adopted;
  for (const auto& adopt : plan.adopt) {
    Accelerator a;
    a.uuid = adopt.device.uuid;
    a.name = adopt.name;
    TakeDriverFacts(*adopt.driver, adopt.device, a);
    a.created_at = a.updated_at = Now();
    adopted.push_back(std::move(a));
  }
  if (changes.empty() && adopted.empty()) return Status::Ok();
  for (Change& c : changes) Prepare(*c.current, c.next);
  std::vector<bool> inserted(adopted.size(), false);
  Status stored = store_.InTransaction([&] {
    for (size_t k = 0; k < adopted.size(); ++k) {
      Status s = store_.Insert(adopted[k]);
      if (s.code() == Code::kExists) {  // taken by a request since the plan: the next rescan looks again
        spdlog::warn("driver {}: {} not adopted now: {}", plan.adopt[k].driver->Name(), plan.adopt[k].device.address,
                     s.message());
        continue;
      }
      if (!s.ok()) return s;
      inserted[k] = true;
    }
    for (const Change& c : changes) {
      if (Status s = store_.Update(c.next); !s.ok()) return s;
    }
    return Status::Ok();
  });
  if (!stored.ok()) return stored;
  for (size_t k = 0; k < adopted.size(); ++k) {
    if (!inserted[k]) continue;
    audit::Changed(who, adopted[k].uuid, "adopted by driver " + plan.adopt[k].driver->Name(), "", adopted[k].name);
    Publish(std::move(adopted[k]));
  }
  for (Change& c : changes) {
    AuditChange(who, c.audited_from, c.next, std::nullopt);
    Publish(std::move(c.next));
  }
  return Status::Ok();
}

Status Service::Rescan(const Request& request) {
  std::lock_guard rescanning(rescan_mu_);
  const RescanPlan plan = PlanRescan();
  const Status applied = ApplyPlan(plan, request.caller);
  spdlog::info("rescan: {} devices reported, {} records: {} adopted, {} changed, {} offline{}", plan.reported,
               plan.records, plan.adopt.size(), plan.update.size(), plan.offline.size(),
               applied.ok() ? "" : "; not applied: " + applied.message());
  return applied;
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

std::string Service::DriversReport() const {
  Json report;
  {
    std::lock_guard lock(report_mu_);
    report = drivers_report_;
  }
  const Status database = store_.Health();
  Json problems = Json::array();
  if (!database.ok()) problems.push_back(database.message());
  report["database"] = {{"state", database.ok() ? "ok" : "failed"}, {"path", store_.path()}, {"problems", problems}};
  for (const auto& [name, part] : reports_) report[name] = part();
  return RenderJson(report);
}

void Service::AddReport(std::string name, std::function<Json()> part) {
  reports_.emplace_back(std::move(name), std::move(part));
}

bool Service::HasDriver(const std::string& name) const {
  for (const auto& driver : drivers_) {
    if (driver->Name() == name) return true;
  }
  return false;
}

void Service::StartRescans(std::chrono::milliseconds interval) {
  if (interval.count() <= 0 || rescanner_.joinable()) return;
  {
    std::lock_guard lock(rescanner_mu_);
    stop_rescans_ = false;
  }
  rescanner_ = std::thread([this, interval] {
    std::unique_lock lock(rescanner_mu_);
    while (!rescanner_cv_.wait_for(lock, interval, [this] { return stop_rescans_; })) {
      lock.unlock();
      try {
        if (Status s = Rescan({}); !s.ok()) spdlog::error("periodic rescan failed: {}", s.message());
      } catch (const std::exception& e) {  // never let a rescan end the daemon
        spdlog::error("periodic rescan failed: internal error: {}", e.what());
      }
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

// After an attach or detach: the device's facts as the driver sees them now.
void Service::RefreshFacts(Driver& driver, Accelerator& a) {
  auto device = driver.Describe(a.driver_address);
  if (device.ok()) TakeDriverFacts(driver, *device, a);
}

std::string Service::UnusedName(const std::string& wanted, const std::set<std::string>& also_taken) const {
  std::string name = wanted;
  for (int n = 2; FindByName(name) || also_taken.count(name); ++n) name = wanted + "-" + std::to_string(n);
  return name;
}

}  // namespace cyborgfs
