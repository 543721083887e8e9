// The durable store: one SQLite file holding the `accelerators` table.
//
// Durability: every call that changes data is one SQLite transaction in WAL
// mode, committed before the call returns. What a successful call wrote
// survives a kill -9 of the daemon (Sync::kNormal, synchronous=NORMAL), and
// also a power cut with Sync::kFull (synchronous=FULL: an fsync per commit).
//
// Schema: versioned with PRAGMA user_version; Open() applies the migrations in
// store.cc in order, each in its own transaction, and refuses a database whose
// version is newer than this build knows. A new database is made whole aside
// and linked into place, so a file at the path is always one cyborgfs made:
// an empty (0-byte) file, or any file without cyborgfs's schema, is refused.
//
// The write-ahead log stays small: SQLite checkpoints every kCheckpointPages
// pages, Checkpoint() (on a schedule, StartCheckpoints) folds it back and
// truncates it, and journal_size_limit caps what a checkpoint leaves. A full
// disk is kNoSpace (ENOSPC), and changes work again once there is room.
//
// The file is the one the path named at Open(): if it is moved or deleted
// meanwhile, the next change notices, and every change is kReadOnly from then
// on (it would go to a file no restart reads); reads go on.
//
// Group commit: changes made by concurrent threads are committed together,
// one transaction (one fsync with Sync::kFull) for all that arrived while the
// previous commit was running; each call still returns only once its change
// is committed, with its own result.
//
// Thread safety: a Store may be shared by threads; statements run on one
// connection, one at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cyborgfs/accelerator.h"
#include "cyborgfs/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace cyborgfs {

class Store {
 public:
  enum class Sync { kNormal, kFull };

  // Opens the database at `path`, creating the file if it is missing (its
  // folder must exist), and migrates it to the current schema. Fails with
  // kIoError and a one-line reason for anything unusable, kBusy while another
  // Store (in any process) has it open: the Store holds an exclusive flock on
  // the file for its life.
  static Result<std::unique_ptr<Store>> Open(const std::string& path, Sync sync = Sync::kNormal);
  // As Open() would, but changing nothing (cyborgfs --check): a missing file
  // is kNotFound, an older schema is not migrated, and the Store refuses
  // every change (kReadOnly). It holds the lock as Open() does.
  static Result<std::unique_ptr<Store>> OpenToCheck(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  static int SchemaVersion();  // the version this build migrates to
  static constexpr int kCheckpointPages = 100;

  const std::string& path() const { return path_; }
  // OK, or why changes are refused (the file was moved or deleted).
  Status Health() const;

  // Folds the write-ahead log into the database and truncates it, if there
  // were commits since the last time. Commits may run meanwhile.
  void Checkpoint();
  // Checkpoints every `interval` on a thread of its own until the Store is
  // destroyed (start it after fork()ing: fuse_daemonize).
  void StartCheckpoints(std::chrono::milliseconds interval);

  // Transactions committed so far (a group commit counts once).
  uint64_t Commits() const;

  // Every accelerator, ordered by id: handed to `each` one by one, or as a vector.
  Status Load(const std::function<void(Accelerator)>& each);
  Result<std::vector<Accelerator>> LoadAll();
  uint64_t Count();  // how many accelerators there are

  // Adds `accelerator` and sets its id. kExists when its uuid or name is taken.
  Status Insert(Accelerator& accelerator);

  // Stores `accelerator` over the row with its id, whose generation must be
  // accelerator.generation - 1 (kBusy otherwise: someone else changed it).
  // kExists when the new name is taken.
  Status Update(const Accelerator& accelerator);

  // Deletes the row; kNotFound if it is not there.
  Status Remove(int64_t id);

  // Runs `body` in one transaction: all of its changes commit, or none do
  // (when it returns an error). Calls of this Store inside `body` join it.
  Status InTransaction(const std::function<Status()>& body);

  // --- The fleet's outbox (src/fleet publishes it) ---
  // Every change of an accelerator row has a number (one more than the
  // last's, kept in the file); the outbox holds, per accelerator with a
  // change not yet published, the number of its latest change: one entry per
  // accelerator at most, so it stays bounded however long the fleet is away.

  // From now on every change of this Store also records its entry, in the
  // same statement (so it commits with the change or not at all). Records
  // this start, `start_id` (random), made at `at` (unix seconds), and returns
  // its epoch (one more than the last start's) and the file's lineage: the
  // ids of its last `lineage` starts, this one's last. A copy of the file
  // made earlier lacks the starts made since.
  struct OutboxStart {
    int64_t epoch = 0;
    int64_t start_id = 0;
    std::vector<int64_t> lineage;
  };
  Result<OutboxStart> StartOutbox(int64_t start_id, int64_t at, size_t lineage = 100);
  struct Pending {
    std::string uuid;
    int64_t seq = 0;                 // its latest change
    std::optional<Accelerator> now;  // the row as of that change; none: removed
  };
  // Up to `limit` entries, oldest change first, each with its row.
  Result<std::vector<Pending>> PendingChanges(size_t limit);
  struct Inventory {
    std::vector<Accelerator> accelerators;
    int64_t seq = 0;  // the number of the last change they include
  };
  // Every accelerator and the number of the last change, read together.
  Result<Inventory> ReadInventory();
  // Forgets the entries published: every one whose change number is at most
  // `up_to`, and each of `entries` whose number is still the one published
  // (an accelerator changed since keeps its entry).
  Status Published(const std::vector<std::pair<std::string, int64_t>>& entries, int64_t up_to = 0);
  uint64_t OutboxDepth();  // how many accelerators have a change to publish

 private:
  struct Change;
  Store(sqlite3* db, int lock_fd, std::string path, bool read_only);
  enum class Mode { kUse, kCheck, kCreate };  // kCreate: the empty file Create() makes aside
  static Result<std::unique_ptr<Store>> Connect(const std::string& path, Sync sync, Mode mode);
  // Makes the database at `path` if no file is there: built aside, then linked.
  static Status Create(const std::string& path);
  // OK while the path still names the file the Store has open; else kReadOnly
  // from then on (and always for a Store opened to check).
  Status StillAtItsPath();
  Status Validate(Mode mode);  // a cyborgfs database this build can use
  Status Exec(const char* sql);
  Status Run(const char* sql);  // one statement, prepared once (BEGIN, COMMIT). REQUIRES: mu_
  Status Migrate();
  // Runs `change` (one statement) in a committed transaction, with the
  // changes of other threads that wait meanwhile (group commit); in the
  // caller's transaction if it is inside InTransaction().
  Status Commit(const std::function<Status()>& change);
  // Runs `batch` in one transaction and sets each change's result; once
  // more if the disk was full. REQUIRES (RunBatch): mu_.
  void CommitBatch(const std::vector<Change*>& batch);
  void RunBatch(const std::vector<Change*>& batch);

  // The prepared statement for `sql`, kept for the Store's life; null if it
  // cannot be prepared. REQUIRES: mu_.
  sqlite3_stmt* Cached(const std::string& sql);

  std::recursive_mutex mu_;  // the connection
  // The thread running an InTransaction() body, whose changes join it.
  std::atomic<std::thread::id> transaction_thread_{};
  sqlite3* db_;
  const int lock_fd_;  // holds the flock
  const std::string path_;
  const bool read_only_;
  mutable std::mutex health_mu_;
  Status gone_;                   // REQUIRES: health_mu_; set once the path names another file
  uint64_t checkpointed_at_ = 0;  // REQUIRES: mu_; commits_ then
  std::unordered_map<std::string, sqlite3_stmt*> statements_;  // REQUIRES: mu_

  mutable std::mutex queue_mu_;
  std::condition_variable committed_;
  std::deque<Change*> queue_;  // REQUIRES: queue_mu_
  bool committing_ = false;    // REQUIRES: queue_mu_; a leader is committing a batch
  uint64_t commits_ = 0;       // REQUIRES: queue_mu_

  std::mutex checkpointer_mu_;
  std::condition_variable checkpointer_cv_;
  bool stop_checkpoints_ = false;  // REQUIRES: checkpointer_mu_
  std::thread checkpointer_;
};

}  // namespace cyborgfs
