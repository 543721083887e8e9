// The accelerator service: the Cyborg accelerator API in the core's terms.
//
// Service owns the accelerators in memory (loaded from the Store at Start and
// written through on every change) and carries out each request: create,
// write a file's value, attach, detach, remove, and reconcile with drivers.
// It knows nothing of FUSE; src/fs maps files to these calls.
//
// Every request either succeeds and is committed in the Store before it
// returns, or fails with a Status, leaves the accelerator as it was, and
// records the reason in the accelerator's `error` file (Accelerator::last_error)
// and the log.
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
#include "cyborgfs/driver.h"
#include "cyborgfs/status.h"
#include "cyborgfs/store.h"
#include "cyborgfs/values.h"

namespace cyborgfs {

class DocumentBuffer;

class Service {
 public:
  using Snapshot = std::shared_ptr<const Accelerator>;

  // Called after every published change: an accelerator added (before is
  // null), changed, or removed (after is null). It runs on the changing
  // thread, possibly with that accelerator's op lock held, so it must not
  // block nor call back into the Service's changing methods.
  using Listener = std::function<void(const Snapshot& before, const Snapshot& after)>;

  // `host` is this host's name: the only host a driver can attach to.
  Service(Store& store, std::vector<std::unique_ptr<Driver>> drivers, std::string host);
  ~Service();

  // Sets the one listener of changes (the FUSE adapter's cache invalidation).
  // Call it before other threads use the Service (Start() may come first).
  void SetListener(Listener listener) { listener_ = std::move(listener); }

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
  // and audits each change. Returns once it is applied; concurrent calls run
  // one after the other. A record changed by a request after it was planned
  // is left for the next rescan.
  Status Rescan();

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

  // SQLite transactions committed since the start (Store::Commits: a group
  // commit of many changes counts once).
  uint64_t StoreCommits() const { return store_.Commits(); }

  // A write(2) of the `rescan` file: "1" (a trailing newline allowed) runs
  // Rescan(); anything else is kInvalid.
  Status WriteRescan(std::string_view data);

  // --- reading: snapshots, never blocked by a writer ------------------------
  Snapshot FindById(int64_t id) const;
  Snapshot FindByUuid(std::string_view uuid) const;
  Snapshot FindByName(std::string_view name) const;
  std::vector<Snapshot> List() const;  // ordered by id
  // At most `limit` accelerators with an id above `after_id`, ordered by id.
  std::vector<Snapshot> ListAfter(int64_t after_id, size_t limit) const;

  // --- POST /accelerators ---------------------------------------------------
  // mkdir accelerators/<uuid>: name = uuid, spec {}, available.
  // kInvalid unless `uuid` is lowercase canonical; kExists if taken.
  Status CreateWithUuid(const std::string& uuid);

  // A write(2) of the `create` file: the Cyborg POST body, possibly in several
  // writes (see DocumentBuffer). The accelerator exists when the write that
  // completes the body returns; an incomplete body waits for the rest until
  // a write at offset 0 starts a new one. kInvalid bad body, kExists name or
  // uuid taken, kTooLarge over kMaxDocumentBytes.
  Status WriteCreate(uint64_t offset, std::string_view data);

  // --- a file of an accelerator ---------------------------------------------
  // A write(2) of `attr` of accelerator `id`; see the README for each file.
  // kAccessDenied for read-only files; kNotFound if the accelerator is gone.
  // A document left incomplete waits for the rest (until a write at offset 0
  // starts a new one) and the error file says so: no close(2) reports it,
  // since opens and closes never reach the daemon.
  Status Write(int64_t id, Attr attr, uint64_t offset, std::string_view data);

  // ftruncate(2) of `attr`: resizes a document being written (see
  // DocumentBuffer); otherwise, and for text files, changes nothing.
  Status Truncate(int64_t id, Attr attr, uint64_t size);

  // rename(2) of a scratch file called `source` over `attr`: `content`
  // replaces the value, with the validation and effects of one write of the
  // whole. A value that is invalid or too large is kInvalid (rename(2) has
  // no "too large"); kAccessDenied for read-only files.
  Status Replace(int64_t id, Attr attr, const std::string& content, const std::string& source);

  // --- rmdir accelerators/<uuid> ---------------------------------------------
  // kBusy while attached or still reported by a driver; kNotFound.
  Status Remove(int64_t id);

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

  // REQUIRES: the slot's op lock is held for the changes below.
  Status WriteText(const Accelerator& current, Attr attr, std::string_view data);
  // Changes the spec buffer of `id` by `change` and applies the document it
  // completes; the write's or truncate's result, recorded when refused.
  template <typename Change>
  Status ChangeSpec(int64_t id, Attr attr, Change change);
  Status ApplyName(const Accelerator& current, std::string_view bytes);
  Status ApplyAttach(const Accelerator& current, std::string_view bytes);
  Status ApplySpec(const Accelerator& current, const std::string& bytes, const Json& spec);
  Status ReplaceSpec(const Accelerator& current, const std::string& content);
  Status Detach(const Accelerator& current);
  // Stores and publishes `next` as the successor of `current`, and audits
  // it: `audited` is the file whose value the request set; without it (the
  // daemon's own changes) the line names the first file whose content
  // changed. REQUIRES: the op lock of `current`.
  Status Commit(const Accelerator& current, Accelerator next, std::optional<Attr> audited = std::nullopt);
  // What Commit does to `next` before storing it (the generation, the time,
  // the error file cleared; the lifecycle's invariants checked in debug builds).
  void Prepare(const Accelerator& current, Accelerator& next) const;
  // Records `why` (prefixed with `what`, e.g. "spec") in the error file and
  // the audit trail, and returns it. REQUIRES: `locked` is held.
  Status Reject(const Locked& locked, const std::string& what, Status why);
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
  Status ApplyPlan(const RescanPlan& plan);
  void RefreshFacts(Driver& driver, Accelerator& a);
  // Stores and publishes a new accelerator; `how` it came (mkdir, create, ...) is audited.
  Status Insert(Accelerator accelerator, std::string_view how);
  Status CreateFrom(const Json& body);  // a complete create body
  std::string UnusedName(const std::string& wanted, const std::set<std::string>& also_taken = {}) const;

  // Replaces the accelerator's snapshot (a new revision) and tells the
  // listener. A snapshot of an older generation than the published one is
  // refused (logged): every publish of a record is ordered with its changes.
  // REQUIRES: mu_ not held; the record's op lock held (or the record new).
  void Publish(Accelerator accelerator);
  void Unpublish(const Snapshot& accelerator);

  Store& store_;
  std::vector<std::unique_ptr<Driver>> drivers_;
  const std::string host_;

  Listener listener_;
  std::atomic<uint64_t> revisions_{0};
  mutable std::shared_mutex mu_;  // guards the three indexes
  std::map<int64_t, Entry> by_id_;
  // Keyed by views of the published snapshot's uuid and name (by_id_ holds it).
  std::unordered_map<std::string_view, int64_t> by_uuid_;
  std::unordered_map<std::string_view, int64_t> by_name_;

  std::mutex create_mu_;  // serializes writes of the create file
  std::unique_ptr<DocumentBuffer> create_writes_;
  std::string last_create_body_;  // REQUIRES: create_mu_

  std::mutex rescan_mu_;  // one rescan at a time
  mutable std::mutex report_mu_;
  Json drivers_report_ = Json::object();  // REQUIRES: report_mu_
  std::mutex rescanner_mu_;
  std::condition_variable rescanner_cv_;
  bool stop_rescans_ = false;  // REQUIRES: rescanner_mu_
  std::thread rescanner_;
};

}  // namespace cyborgfs
