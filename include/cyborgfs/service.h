// The accelerator service: the Cyborg accelerator API, for every front end.
//
// Service owns the accelerators in memory (loaded from the Store at Start and
// written through on every change) and carries out the Cyborg verbs: list and
// get, create, set the spec, rename, attach, detach, remove, and rescan the
// drivers. It knows nothing of files or HTTP: each front end (src/fs, src/api)
// maps its requests to these calls, naming who asks (a Request's Caller).
//
// Every verb either succeeds, committed in the Store before it returns, and
// returns the Change it made (also when it changed nothing: re-applying a
// value is harmless), or fails with a Status, leaves the accelerator as it
// was, and records the reason in the accelerator's `error` file
// (Accelerator::last_error) and the audit trail, worded with the request's
// label ("spec: line 3, column 5: ...").
//
// Thread safety: all public methods may be called concurrently. Changes to one
// accelerator are serialized (a per-accelerator lock, held across driver
// calls); changes to different accelerators only meet in the Store's commit.
// Readers get immutable snapshots and never wait for a driver.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cyborgfs/accelerator.h"
#include "cyborgfs/attributes.h"
#include "cyborgfs/caller.h"
#include "cyborgfs/driver.h"
#include "cyborgfs/status.h"
#include "cyborgfs/store.h"
#include "cyborgfs/values.h"

namespace cyborgfs {

class Service {
 public:
  using Snapshot = std::shared_ptr<const Accelerator>;

  // One request of a front end.
  struct Request {
    Caller caller;  // who asks: the audit trail names it
    // The front end asking (any address of its own): its listener is not told
    // of the changes this request makes, since the verb returns them.
    const void* origin = nullptr;
    // How the request names itself in `error` and the audit trail; empty:
    // the verb's own file (spec, name, attach, rmdir, create).
    std::string label;
  };

  // What a verb did: the record before and after (null before a create,
  // after a remove; the same snapshot when nothing changed) and the files
  // whose content changed.
  struct Change {
    Snapshot before;
    Snapshot after;
    std::vector<Attr> files;
    bool changed() const { return before != after; }
    bool renamed() const { return !before || !after || before->name != after->name; }
  };

  // Told of every published change a verb does not return to its caller: the
  // daemon's own (rescans, adoptions) and those of other front ends. It runs
  // on the changing thread, possibly with that accelerator's op lock held, so
  // it must not block nor call back into the Service's changing methods.
  using Listener = std::function<void(const Snapshot& before, const Snapshot& after)>;

  // `host` is this host's name: the only host a driver can attach to.
  Service(Store& store, std::vector<std::unique_ptr<Driver>> drivers, std::string host);
  ~Service();

  // Adds a listener of changes for front end `origin` (one per front end).
  // Call it before other threads use the Service (Start() may come first).
  void AddListener(const void* origin, Listener listener);

  // Loads the store and reconciles it with what the drivers discover: new
  // devices are added, known ones come back online, ones no longer reported
  // go offline (their records are kept); all in one transaction. Fails only
  // if the store fails; a failing driver is logged and its accelerators go
  // offline.
  Status Start();

  // What a rescan would change: the drivers' devices compared with the
  // records, and for each difference what is to be done. Rescan() applies it.
  struct RescanPlan {
    enum class Step {
      kNone,         // its facts changed, or it is back online: no host step
      kSettle,       // the host already agrees with what the user asked (a
                     // pending detach done, an attachment held again): no host step
      kRestore,      // attached in the record, not on the host: attach it again
      kRepair,       // detached in the record, held on the host (a crash mid-attach): detach it
      kRetryDetach,  // the user's detach failed before: detach it again
    };
    struct Adopt {
      Driver* driver;
      DiscoveredDevice device;
      std::string name;  // the device's suggested name, or one made unique
    };
    struct Update {
      Snapshot current;  // the record as planned from
      Driver* driver;
      DiscoveredDevice device;  // as discovered
      Step step;
    };
    std::vector<Adopt> adopt;       // devices no record has
    std::vector<Update> update;     // reported devices whose record changes or whose host needs a step
    std::vector<Snapshot> offline;  // records of a driver that no longer reports them
    size_t reported = 0;            // devices the drivers report, in all
    size_t records = 0;             // records compared with them
    bool empty() const { return adopt.empty() && update.empty() && offline.empty(); }
  };
  // Discovers once per driver (recording the drivers' health for
  // DriversReport) and plans, in time linear in the number of devices and
  // records. Changes no record and makes no host step.
  RescanPlan PlanRescan();

  // Plans and applies: calls a driver only for the steps above, commits every
  // change of the plan in one transaction (none when the plan is empty),
  // and audits each change (as `request`'s). Returns once it is applied;
  // concurrent calls run one after the other. A record changed by a request
  // after it was planned is left for the next rescan. Every listener is told
  // of its changes, whoever asked.
  Status Rescan(const Request& request);

  // Rescans every `interval` on a thread of its own until StopRescans() (the
  // destructor stops it too). An interval of 0 means never.
  void StartRescans(std::chrono::milliseconds interval);
  void StopRescans();

  // The drivers' state after the last rescan, for the `drivers` file: per
  // driver {"state": "ok" | "degraded" | "failed", "devices": N,
  // "rescanned_at": unix seconds, "problems": [...]}, and the database's as
  // "database": {"state": "ok" | "failed", "path": ..., "problems": [...]}
  // (failed: it was moved or deleted, changes are refused); pretty JSON.
  std::string DriversReport() const;
  // Adds the part `name` of DriversReport: a front end's own health (the
  // fleet's publisher), asked for at every report. Call it before serving.
  void AddReport(std::string name, std::function<Json()> part);

  // SQLite transactions committed since the start (Store::Commits: a group
  // commit of many changes counts once).
  uint64_t StoreCommits() const { return store_.Commits(); }
  // Whether one of its drivers is `name` ("pci", "fake").
  bool HasDriver(const std::string& name) const;
  // This host's name (--host).
  const std::string& host() const { return host_; }

  // --- GET: snapshots, never blocked by a writer -------------------------------
  Snapshot FindById(int64_t id) const;
  Snapshot FindByUuid(std::string_view uuid) const;
  Snapshot FindByName(std::string_view name) const;
  std::vector<Snapshot> List() const;  // ordered by id
  // At most `limit` accelerators with an id above `after_id`, ordered by id.
  std::vector<Snapshot> ListAfter(int64_t after_id, size_t limit) const;

  // Published changes since the start: any change of any record (its error
  // file included) and every create and remove make it grow.
  uint64_t Revision() const { return revisions_.load(); }
  // GET /accelerators: ListBody (records.h) of every accelerator, rendered
  // once per revision and shared by every reader until the next change. Its
  // records are at least as new as `revision`.
  struct Listing {
    uint64_t revision = 0;
    int64_t rendered_at = 0;  // unix seconds
    std::string body;
  };
  std::shared_ptr<const Listing> ListDocument() const;

  // --- the changes ------------------------------------------------------------
  // Where a verb takes `bytes`, they are the value as the user wrote it (kept
  // and shown as written: "what you write is what you read"); nullopt: it is
  // shown canonically. kNotFound when there is no accelerator `id`.

  // POST /accelerators: a new accelerator named `body.name`, with `body.uuid`
  // or a random one; spec {}, available. kExists if the uuid or name is taken.
  Result<Change> Create(const CreateRequest& body, const Request& request);

  // PUT /accelerators/{uuid}/acc_specs: `spec` (ValidateSpec) becomes the
  // accelerator's acc_specs. kInvalid for a bad spec; kBusy when
  // `expected_generation` is given and is not the record's generation (it
  // was changed meanwhile).
  Result<Change> SetSpec(int64_t id, const Json& spec, std::optional<std::string> bytes,
                         std::optional<int64_t> expected_generation, const Request& request);

  // A new name (ValidateName); kExists if it is taken.
  Result<Change> Rename(int64_t id, const std::string& name, std::optional<std::string> bytes, const Request& request);

  // PUT /accelerators/{uuid}: attached to `target`, through the accelerator's
  // driver (if it has one). Attaching to the target it has changes nothing,
  // unless it is in the error state: then it is attached again (a failed
  // restore retried, a pending detach cancelled). kBusy attached elsewhere,
  // kNoDevice offline, kInvalid a target the driver cannot serve, kIoError
  // the driver failed (nothing left behind).
  Result<Change> Attach(int64_t id, const AttachTarget& target, std::optional<std::string> bytes,
                        const Request& request);

  // DELETE /accelerators/{uuid}: detached. Detaching a detached accelerator
  // changes nothing. A detach the driver fails is kIoError, and committed as
  // the error state (the attachment kept; a rescan retries it).
  Result<Change> Detach(int64_t id, const Request& request);
  // Takes the accelerator out of service (`on`) or puts it back: its
  // attachment stays; while on, an attach is kBusy ("in maintenance") and
  // the fleet never claims it. Setting what it has is a no-op.
  Result<Change> SetMaintenance(int64_t id, bool on, const Request& request);

  // Removes the record. kBusy while attached or still reported by a driver.
  Result<Change> Remove(int64_t id, const Request& request);

  // A request the front end refused itself (a bad write(2), an unparsable
  // body) concerning accelerator `id`: recorded in its error file and the
  // audit trail, worded with the request's label. Returns `why` so worded.
  Status Refuse(int64_t id, Status why, const Request& request);
  // Sets the error file of accelerator `id` to `text` (no audit line): what
  // a front end says of a request it has not finished (a document being
  // written in several writes).
  void Explain(int64_t id, const std::string& text);

 private:
  struct Slot;
  struct Entry {
    Snapshot accelerator;
    std::shared_ptr<Slot> slot;  // made at the first change (Lock)
  };

  // Accelerator `id` with its op lock held, and its snapshot under that lock.
  struct Locked {
    std::shared_ptr<Slot> slot;
    std::unique_lock<std::mutex> lock;
    Snapshot current;
  };
  Result<Locked> Lock(int64_t id);
  Driver* DriverOf(const Accelerator& a) const;

  // Runs `change` on accelerator `id` with its op lock held; a refusal is
  // recorded (Reject) under the request's label, or `what` without one.
  template <typename Apply>
  Result<Change> Modify(int64_t id, const char* what, const Request& request, Apply apply);
  // The verbs' steps. REQUIRES: the op lock of `current`.
  Result<Change> ApplyAttach(const Accelerator& current, const AttachTarget& target, std::optional<std::string> bytes,
                             const Request& request);
  Result<Change> ApplyDetach(const Accelerator& current, const Request& request);
  // No change: `current` before and after.
  Change Unchanged(const Snapshot& current) const { return Change{current, current, {}}; }
  // Stores and publishes `next` as the successor of `current`, and audits
  // it as `who`'s: `audited` is the file whose value the request set; without
  // it the line names the first file whose content changed. `origin`'s
  // listener is not told (the change is returned to it). REQUIRES: the op
  // lock of `current`.
  Result<Change> Commit(const Accelerator& current, Accelerator next, const Request& request,
                        std::optional<Attr> audited = std::nullopt);
  // What Commit does to `next` before storing it (the generation, the time,
  // the error file cleared; the lifecycle's invariants checked in debug builds).
  void Prepare(const Accelerator& current, Accelerator& next) const;
  // Records `why` (prefixed with `what`, e.g. "spec") in the error file and
  // the audit trail, and returns it. REQUIRES: `locked` is held.
  Status Reject(const Locked& locked, const std::string& what, Status why, const Caller& who);
  // Sets the error file of the locked accelerator to `text`.
  void SetLastError(const Locked& locked, const std::string& text);

  // Logs a failed discovery and keeps the driver's state for DriversReport().
  void RecordHealth(Driver& driver, const Result<std::vector<DiscoveredDevice>>& devices);
  // The record `current` becomes with `device`'s facts, reported again, and
  // settled if `step` is kSettle: what a plan step makes of it without the host.
  Accelerator Settled(const Accelerator& current, const Driver& driver, const DiscoveredDevice& device,
                      RescanPlan::Step step) const;
  // What the host needs for `record` reported as `device`.
  RescanPlan::Step StepFor(const Accelerator& record, Driver& driver, const DiscoveredDevice& device) const;
  // Carries out `update`'s host step on `next` (already Settled).
  void RunHostStep(const RescanPlan::Update& update, Accelerator& next);
  Status ApplyPlan(const RescanPlan& plan, const Caller& who);
  void RefreshFacts(Driver& driver, Accelerator& a);
  std::string UnusedName(const std::string& wanted, const std::set<std::string>& also_taken = {}) const;

  // Replaces the accelerator's snapshot (a new revision) and tells the
  // listeners but `origin`'s. A snapshot of an older generation than the
  // published one is refused (logged; null returned): every publish of a
  // record is ordered with its changes. REQUIRES: mu_ not held; the record's
  // op lock held (or the record new).
  Snapshot Publish(Accelerator accelerator, const void* origin = nullptr);
  void Unpublish(const Snapshot& accelerator, const void* origin);
  void Tell(const void* origin, const Snapshot& before, const Snapshot& after) const;

  Store& store_;
  std::vector<std::unique_ptr<Driver>> drivers_;
  const std::string host_;

  std::vector<std::pair<const void*, Listener>> listeners_;
  std::atomic<uint64_t> revisions_{0};
  mutable std::mutex listing_mu_;                   // one rendering at a time
  mutable std::shared_ptr<const Listing> listing_;  // REQUIRES: listing_mu_
  mutable std::shared_mutex mu_;                    // guards the three indexes
  std::map<int64_t, Entry> by_id_;
  // Keyed by views of the published snapshot's uuid and name (by_id_ holds it).
  std::unordered_map<std::string_view, int64_t> by_uuid_;
  std::unordered_map<std::string_view, int64_t> by_name_;

  std::mutex rescan_mu_;  // one rescan at a time
  mutable std::mutex report_mu_;
  Json drivers_report_ = Json::object();                                // REQUIRES: report_mu_
  std::vector<std::pair<std::string, std::function<Json()>>> reports_;  // set before serving
  std::mutex rescanner_mu_;
  std::condition_variable rescanner_cv_;
  bool stop_rescans_ = false;  // REQUIRES: rescanner_mu_
  std::thread rescanner_;
};

}  // namespace cyborgfs
