// The fleet's publisher: this host's accelerators, in the fleet's PostgreSQL
// (--fleet CONNINFO), for every host and scheduler to see.
//
// The host stays the authority of its own accelerators and never waits for
// the center. A change (a file write, a request, a rescan) commits in SQLite
// with its outbox entry in the same statement (Store::StartOutbox) and
// returns; this publisher sends it afterwards, on a thread of its own, and
// while PostgreSQL is stopped, unreachable or slow nothing local waits for it:
// the outbox keeps the latest change of each accelerator and drains when the
// server is back.
//
// On every connection it migrates the fleet's schema (below; a newer one
// than this build knows: it publishes nothing and says so), registers the
// host with this start's epoch and the kernel's boot id, and publishes the
// whole inventory (anti-entropy: the host's rows become exactly its
// accelerators, those it no longer has are marked removed); then it publishes the
// outbox, oldest change first, in transactions of up to kBatch accelerators,
// woken by a change (at most every kPublishAtMostEvery); renews the host's lease every lease / 3
// (lease_expires_at = the server's now() + the lease: no decision uses the
// hosts' clocks); and publishes the whole inventory again every
// kResyncEvery (jittered). A failure drops the connection and tries again
// after a growing, jittered wait (1 s, doubling to 30 s).
//
// Exactly once in effect: each row in PostgreSQL keeps the (epoch, seq) of
// the change that wrote it, and a change is applied only over an older one:
// a change delivered twice applies once, an older one never overwrites a
// newer one. An outbox entry is forgotten only once PostgreSQL committed it.
//
// Fencing: each start has a random id, recorded in SQLite with the ids of
// the file's earlier starts (its lineage), and an epoch (the count of starts;
// with the kernel's boot id, for people). The host's row in PostgreSQL is
// taken over only by a start whose lineage holds the row's start: a copy of
// the database made before it (a restored backup, a cloned image), or a
// second daemon running as the same host, is refused ("fenced"), publishes
// nothing, logs it, and its report says so; the center keeps its state
// until an operator deletes the host's row.
//
// Its state is a part of the drivers file (Report()): "ok", "degraded"
// (PostgreSQL away: since when, why, how many changes wait) or "failed"
// (fenced, or the schema is newer).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "cyborgfs/service.h"
#include "cyborgfs/store.h"
#include "cyborgfs/values.h"

namespace cyborgfs::fleet {

class Postgres;

class Publisher {
 public:
  struct Options {
    std::string conninfo;
    std::string host;
    std::chrono::seconds lease{30};
  };
  static constexpr size_t kBatch = 500;
  static constexpr std::chrono::seconds kResyncEvery{300};
  // At most one publication of the outbox this often: a burst of changes is
  // one transaction, and the fleet's readers read it once.
  static constexpr std::chrono::milliseconds kPublishAtMostEvery{50};

  // Listens to `service`'s changes (construct it before serving).
  Publisher(Service& service, Store& store, Options options);
  ~Publisher() { Stop(); }
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // Starts the outbox: this start's epoch, and every change from now on
  // recorded with it (before serving).
  Status Prepare();
  // Starts the thread (after fork: fuse_daemonize).
  void Start();
  // Ends the thread; what is not published stays in the outbox.
  void Stop();
  // {"state", "server", "host", "epoch", "outbox", "published_at",
  //  "connected_since", "resync_ms", "problems": [...]}
  Json Report() const;

 private:
  enum class Outcome { kStopped, kFailed, kRefused };  // how a session ended
  void Run();
  Outcome Session(Status& why);
  Status Migrate(Postgres& db);
  Status Register(Postgres& db);
  struct Batch;
  // Publishes `batch` in one transaction; with `whole` (the host's uuids, a
  // PostgreSQL array), it is the whole inventory and the host's other rows go.
  Status Publish(Postgres& db, const Batch& batch, const std::string* whole);
  Status Resync(Postgres& db);
  Status Drain(Postgres& db);
  Status Renew(Postgres& db);
  // Locks the host's row and checks it is still this start's.
  Status CheckStart(Postgres& db);
  // Waits until `until`, a change (if `on_change`), or Stop().
  void Wait(std::chrono::steady_clock::time_point until, bool on_change);
  void Wake();
  bool Stopping() const;
  void Note(const char* state, const std::string& problem);

  Service& service_;
  Store& store_;
  const Options options_;
  const std::string server_;  // the conninfo without its password
  int64_t epoch_ = 0;
  int64_t start_id_ = 0;
  std::string lineage_;  // the file's starts, a PostgreSQL array: {id,id,...}
  std::string boot_id_;
  bool served_ = false;  // the thread's: the last session got to publishing

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                      // REQUIRES: mu_
  bool changed_ = false;                       // REQUIRES: mu_; a change since the last drain
  bool awaiting_change_ = false;               // REQUIRES: mu_; Wait() for a change is under way
  std::string state_ = "degraded";             // REQUIRES: mu_
  std::string problem_ = "not connected yet";  // REQUIRES: mu_
  int64_t published_at_ = 0;                   // REQUIRES: mu_; unix seconds
  int64_t connected_since_ = 0;                // REQUIRES: mu_
  int64_t failing_since_ = 0;                  // REQUIRES: mu_
  bool connected_ = false;                     // REQUIRES: mu_; the last session connected
  double resync_ms_ = -1;                      // REQUIRES: mu_; how long the last whole publication took
  std::thread thread_;
};

}  // namespace cyborgfs::fleet
