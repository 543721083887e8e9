// SQLite persistence of accelerators.
#include "cyborgfs/store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "cyborgfs/values.h"

namespace cyborgfs {
namespace {

// Migration i takes the schema from version i to version i + 1. Never edit a
// migration that has shipped; append a new one.
const char* const kMigrations[] = {
    R"sql(
    CREATE TABLE accelerators (
      accelerator_id     INTEGER PRIMARY KEY AUTOINCREMENT,
      uuid               TEXT    NOT NULL UNIQUE,
      name               TEXT    NOT NULL UNIQUE,
      device_type        TEXT    NOT NULL DEFAULT '',
      acc_type           TEXT    NOT NULL DEFAULT '',
      acc_capability     TEXT    NOT NULL DEFAULT '{}',
      vendor_id          TEXT    NOT NULL DEFAULT '',
      product_id         TEXT    NOT NULL DEFAULT '',
      remotable          INTEGER NOT NULL DEFAULT 0 CHECK (remotable IN (0, 1)),
      spec               TEXT    NOT NULL DEFAULT '{}',
      state              TEXT    NOT NULL DEFAULT 'available'
                         CHECK (state IN ('available', 'attached', 'offline', 'error')),
      attachment         TEXT    NOT NULL DEFAULT '',
      attach_handle      TEXT    NOT NULL DEFAULT '',
      driver             TEXT    NOT NULL DEFAULT '',
      driver_address     TEXT    NOT NULL DEFAULT '',
      driver_device_type TEXT    NOT NULL DEFAULT '',
      driver_acc_type    TEXT    NOT NULL DEFAULT '',
      name_bytes         BLOB,
      spec_bytes         BLOB,
      attach_bytes       BLOB,
      generation         INTEGER NOT NULL DEFAULT 1,
      created_at         INTEGER NOT NULL,
      updated_at         INTEGER NOT NULL
    );
    )sql",
    R"sql(
    ALTER TABLE accelerators ADD COLUMN host_facts TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE accelerators ADD COLUMN driver_memory TEXT NOT NULL DEFAULT '{}';
    )sql",
    // A failed detach is now told apart from a failed restore; the error
    // state was documented as a failed detach.
    R"sql(
    ALTER TABLE accelerators ADD COLUMN detaching INTEGER NOT NULL DEFAULT 0 CHECK (detaching IN (0, 1));
    UPDATE accelerators SET detaching = 1 WHERE state = 'error' AND attachment != '';
    )sql",
    // Says "cyborgfs" in the file's header ('cybf').
    R"sql(
    PRAGMA application_id = 1668899430;
    )sql",
    // The fleet's outbox (src/fleet): the number of the last change and of
    // the last start, the starts this file made (its lineage), and the
    // accelerators with a change not yet published, each with the number of
    // its latest change.
    R"sql(
    CREATE TABLE fleet_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO fleet_meta (key, value) VALUES ('seq', 0), ('epoch', 0);
    CREATE TABLE fleet_starts (start_id INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, at INTEGER NOT NULL);
    CREATE TABLE fleet_outbox (uuid TEXT PRIMARY KEY, seq INTEGER NOT NULL);
    CREATE INDEX fleet_outbox_by_seq ON fleet_outbox (seq);
    )sql",
    // The outbox clustered by uuid, without the index by seq: an entry
    // replaced in a change's transaction writes one page of it, not three
    // (the outbox holds at most one entry per accelerator; it is read
    // whole, in seq order, by the publisher).
    R"sql(
    CREATE TABLE fleet_outbox_clustered (uuid TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO fleet_outbox_clustered (uuid, seq) SELECT uuid, seq FROM fleet_outbox;
    DROP TABLE fleet_outbox;
    ALTER TABLE fleet_outbox_clustered RENAME TO fleet_outbox;
    )sql",
    // The fleet's accelerator request holding an accelerator (a uuid, or '').
    R"sql(
    ALTER TABLE accelerators ADD COLUMN held_by TEXT NOT NULL DEFAULT '';
    )sql",
    // Out of service (the maintenance file): 0 or 1.
    R"sql(
    ALTER TABLE accelerators ADD COLUMN maintenance INTEGER NOT NULL DEFAULT 0;
    )sql",
};
constexpr int64_t kApplicationId = 1668899430;
constexpr int kBusyTimeoutMs = 5000;  // another connection (sqlite3(1)) holding a lock
// What a checkpoint leaves of the write-ahead log at most, in bytes.
constexpr int64_t kJournalSizeLimit = 1 << 20;
constexpr int kSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

// The columns in the order Bind() and Read() use them.
constexpr const char* kColumns =
    "uuid, name, device_type, acc_type, acc_capability, vendor_id, product_id, remotable, spec, state, "
    "attachment, attach_handle, driver, driver_address, driver_device_type, driver_acc_type, name_bytes, "
    "spec_bytes, attach_bytes, generation, created_at, updated_at, host_facts, driver_memory, detaching, held_by, "
    "maintenance";
constexpr int kColumnCount = 27;
constexpr int CountColumns(const char* list) {
  int n = 1;
  for (; *list; ++list) n += *list == ',';
  return n;
}
static_assert(CountColumns(kColumns) == kColumnCount, "kColumns and kColumnCount disagree");

// One prepared statement, finalized when it goes out of scope; or one of the
// Store's cached statements, reset for its next use.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr);
  }
  // `cached` is null if it could not be prepared: Step() then fails.
  Statement(sqlite3* db, sqlite3_stmt* cached) : db_(db), stmt_(cached), cached_(true) {
    rc_ = cached ? SQLITE_OK : sqlite3_errcode(db);
  }
  ~Statement() {
    if (!cached_) {
      sqlite3_finalize(stmt_);
    } else if (stmt_) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  void Bind(int i, const std::string& v) { sqlite3_bind_text(stmt_, i, v.data(), int(v.size()), SQLITE_TRANSIENT); }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, const std::optional<std::string>& v) {
    if (v) {
      sqlite3_bind_blob(stmt_, i, v->data(), int(v->size()), SQLITE_TRANSIENT);
    } else {
      sqlite3_bind_null(stmt_, i);
    }
  }

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return rc_ == SQLITE_OK ? sqlite3_step(stmt_) : rc_; }

  std::string Text(int i) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_blob(stmt_, i));
    return p ? std::string(p, size_t(sqlite3_column_bytes(stmt_, i))) : std::string();
  }
  std::optional<std::string> OptionalText(int i) const {
    if (sqlite3_column_type(stmt_, i) == SQLITE_NULL) return std::nullopt;
    return Text(i);
  }
  int64_t Int(int i) const { return sqlite3_column_int64(stmt_, i); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  bool cached_ = false;
  int rc_;
};

// SQLite's last error on `db`: a full disk is kNoSpace, anything else kIoError.
Status DatabaseError(sqlite3* db, const std::string& what) {
  if (sqlite3_errcode(db) == SQLITE_FULL) {
    return Status::NoSpace("database: " + what + ": the disk is full (" + sqlite3_errmsg(db) + ")");
  }
  return Status::IoError("database: " + what + ": " + sqlite3_errmsg(db));
}

// A unique-constraint failure names the column ("UNIQUE constraint failed:
// accelerators.name"), which tells the user what is taken.
Status WriteError(sqlite3* db, const Accelerator& a, const std::string& what) {
  if (sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_UNIQUE) {
    const std::string message = sqlite3_errmsg(db);
    if (message.find(".uuid") != std::string::npos) return Status::Exists("uuid " + a.uuid + " exists");
    if (message.find(".name") != std::string::npos) return Status::Exists("name \"" + a.name + "\" is taken");
  }
  return DatabaseError(db, what);
}

// The host facts as the host_facts column holds them: a JSON object whose
// keys are the fields, absent where a field is empty (or -1).
std::string FactsToJson(const HostFacts& f) {
  Json facts = Json::object();
  auto text = [&](const char* key, const std::string& value) {
    if (!value.empty()) facts[key] = value;
  };
  auto count = [&](const char* key, int64_t value) {
    if (value >= 0) facts[key] = value;
  };
  text("kernel_driver", f.kernel_driver);
  text("model", f.model);
  count("numa_node", f.numa_node);
  text("iommu_group", f.iommu_group);
  text("physfn", f.physfn);
  if (!f.virtfns.empty()) facts["virtfns"] = f.virtfns;
  count("sriov_totalvfs", f.sriov_totalvfs);
  count("sriov_numvfs", f.sriov_numvfs);
  text("subsystem_id", f.subsystem_id);
  for (const auto& [type, offer] : f.mdev_types) {
    facts["mdev_types"][type] = {{"name", offer.name}, {"available_instances", offer.available_instances}};
  }
  facts["health"] = f.health;
  if (!f.health_reasons.empty()) facts["health_reasons"] = f.health_reasons;
  count("aer_correctable", f.aer_correctable);
  count("aer_nonfatal", f.aer_nonfatal);
  count("aer_fatal", f.aer_fatal);
  return facts.dump();
}

// A column that does not parse, or a field of the wrong type, reads as absent.
HostFacts FactsFromJson(const std::string& text) {
  HostFacts f;
  const Json facts = Json::parse(text, nullptr, false);
  if (!facts.is_object()) return f;
  auto text_of = [&](const char* key) {
    auto it = facts.find(key);
    return it != facts.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto count_of = [&](const char* key) {
    auto it = facts.find(key);
    return it != facts.end() && it->is_number_integer() ? it->get<int>() : -1;
  };
  f.kernel_driver = text_of("kernel_driver");
  f.model = text_of("model");
  f.numa_node = count_of("numa_node");
  f.iommu_group = text_of("iommu_group");
  f.physfn = text_of("physfn");
  if (auto it = facts.find("virtfns"); it != facts.end() && it->is_array()) {
    for (const Json& vf : *it) {
      if (vf.is_string()) f.virtfns.push_back(vf.get<std::string>());
    }
  }
  f.sriov_totalvfs = count_of("sriov_totalvfs");
  f.sriov_numvfs = count_of("sriov_numvfs");
  f.subsystem_id = text_of("subsystem_id");
  if (auto it = facts.find("mdev_types"); it != facts.end() && it->is_object()) {
    for (const auto& [type, offer] : it->items()) {
      if (!offer.is_object()) continue;
      f.mdev_types[type] = {offer.value("name", type), offer.value("available_instances", 0)};
    }
  }
  if (std::string health = text_of("health"); !health.empty()) f.health = health;  // before health: unknown
  if (auto it = facts.find("health_reasons"); it != facts.end() && it->is_array()) {
    for (const Json& reason : *it) {
      if (reason.is_string()) f.health_reasons.push_back(reason.get<std::string>());
    }
  }
  auto total_of = [&](const char* key) {
    auto it = facts.find(key);
    return it != facts.end() && it->is_number_integer() ? it->get<int64_t>() : int64_t{-1};
  };
  f.aer_correctable = total_of("aer_correctable");
  f.aer_nonfatal = total_of("aer_nonfatal");
  f.aer_fatal = total_of("aer_fatal");
  return f;
}

void BindColumns(Statement& s, const Accelerator& a) {
  int i = 1;
  s.Bind(i++, a.uuid);
  s.Bind(i++, a.name);
  s.Bind(i++, a.device_type);
  s.Bind(i++, a.acc_type);
  s.Bind(i++, a.acc_capability);
  s.Bind(i++, a.vendor_id);
  s.Bind(i++, a.product_id);
  s.Bind(i++, int64_t{a.remotable});
  s.Bind(i++, a.spec);
  s.Bind(i++, std::string(StateName(a.state)));
  s.Bind(i++, a.attachment);
  s.Bind(i++, a.attach_handle);
  s.Bind(i++, a.driver);
  s.Bind(i++, a.driver_address);
  s.Bind(i++, a.driver_device_type);
  s.Bind(i++, a.driver_acc_type);
  s.Bind(i++, a.name_bytes);
  s.Bind(i++, a.spec_bytes);
  s.Bind(i++, a.attach_bytes);
  s.Bind(i++, a.generation);
  s.Bind(i++, a.created_at);
  s.Bind(i++, a.updated_at);
  s.Bind(i++, FactsToJson(a.facts));
  s.Bind(i++, a.driver_memory);
  s.Bind(i++, int64_t{a.detaching});
  s.Bind(i++, a.held_by);
  s.Bind(i++, int64_t{a.maintenance});
}

// The row of kColumns preceded by accelerator_id, from column `i` on.
Accelerator ReadColumns(const Statement& s, int i = 0) {
  Accelerator a;
  a.id = s.Int(i++);
  a.uuid = s.Text(i++);
  a.name = s.Text(i++);
  a.device_type = s.Text(i++);
  a.acc_type = s.Text(i++);
  a.acc_capability = s.Text(i++);
  a.vendor_id = s.Text(i++);
  a.product_id = s.Text(i++);
  a.remotable = s.Int(i++) != 0;
  a.spec = s.Text(i++);
  a.state = StateFromName(s.Text(i++)).value_or(State::kError);
  a.attachment = s.Text(i++);
  a.attach_handle = s.Text(i++);
  a.driver = s.Text(i++);
  a.driver_address = s.Text(i++);
  a.driver_device_type = s.Text(i++);
  a.driver_acc_type = s.Text(i++);
  a.name_bytes = s.OptionalText(i++);
  a.spec_bytes = s.OptionalText(i++);
  a.attach_bytes = s.OptionalText(i++);
  a.generation = s.Int(i++);
  a.created_at = s.Int(i++);
  a.updated_at = s.Int(i++);
  a.facts = FactsFromJson(s.Text(i++));
  a.driver_memory = s.Text(i++);
  a.detaching = s.Int(i++) != 0;
  a.held_by = s.Text(i++);
  a.maintenance = s.Int(i++) != 0;
  return a;
}

std::string Placeholders(int n) {
  std::string out;
  for (int i = 1; i <= n; ++i) out += (i > 1 ? ", ?" : "?");
  return out;
}

// An exclusive flock(2) on the database file, held on a descriptor of its
// own: one Store per file at a time, across processes. A flock is apart from
// SQLite's fcntl locks, survives fork (fuse_daemonize) and goes with the
// process. Returns the descriptor, or why the file is unusable or taken.
Result<int> LockFile(const std::string& path, bool read_only) {
  const int fd = open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return Status::IoError("cannot open database " + path + ": " + std::strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    close(fd);
    if (error == EWOULDBLOCK) {
      return Status::Busy("database " + path + " is in use by another cyborgfs; stop it first, or use another --db");
    }
    return Status::IoError("cannot lock database " + path + ": " + std::strerror(error));
  }
  return fd;
}

Status SyncFile(const std::string& path, int flags) {
  const int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0 || fsync(fd) != 0) {
    const int error = errno;
    if (fd >= 0) close(fd);
    return Status::IoError("cannot sync " + path + ": " + std::strerror(error));
  }
  close(fd);
  return Status::Ok();
}

}  // namespace

Status Store::Create(const std::string& path) {
  std::string temp = path + ".new-XXXXXX";
  const int fd = mkstemp(temp.data());
  if (fd < 0) return Status::IoError("cannot create database " + path + ": " + std::strerror(errno));
  close(fd);
  Status made = [&] {
    auto store = Connect(temp, Sync::kFull, Mode::kCreate);  // migrates the empty file to the current schema
    if (!store.ok()) return store.status();
    store->reset();  // the last connection's close folds the log into the file
    if (Status s = SyncFile(temp, O_RDONLY); !s.ok()) return s;
    if (link(temp.c_str(), path.c_str()) != 0 && errno != EEXIST) {  // EEXIST: another start made it meanwhile
      return Status::IoError("cannot create database " + path + ": " + std::strerror(errno));
    }
    return SyncFile(std::filesystem::path(path).parent_path().string(), O_RDONLY | O_DIRECTORY);
  }();
  unlink(temp.c_str());
  return made;
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& path, Sync sync) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::IoError("cannot open database " + path + ": " + std::strerror(errno));
    if (Status s = Create(path); !s.ok()) return s;
  }
  return Connect(path, sync, Mode::kUse);
}

Result<std::unique_ptr<Store>> Store::OpenToCheck(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    return Status::NotFound("database " + path + " does not exist yet: a start creates it");
  }
  return Connect(path, Sync::kNormal, Mode::kCheck);
}

Result<std::unique_ptr<Store>> Store::Connect(const std::string& path, Sync sync, Mode mode) {
  const bool check = mode == Mode::kCheck;
  auto lock = LockFile(path, check);
  if (!lock.ok()) return lock.status();
  sqlite3* db = nullptr;
  const int flags = (check ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    close(*lock);
    return Status::IoError("cannot open database " + path + ": " + message);
  }
  std::unique_ptr<Store> store(new Store(db, *lock, path, check));
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  // Before anything writes to it: an empty file would become a database.
  if (Status s = store->Validate(mode); !s.ok()) return s.Prefixed("cannot use database " + path);
  if (!check) {
    const std::string pragmas[] = {
        "PRAGMA journal_mode=WAL", sync == Sync::kFull ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON", "PRAGMA wal_autocheckpoint=" + std::to_string(kCheckpointPages),
        "PRAGMA journal_size_limit=" + std::to_string(kJournalSizeLimit)};
    for (const std::string& pragma : pragmas) {
      if (Status s = store->Exec(pragma.c_str()); !s.ok()) return s.Prefixed("cannot use database " + path);
    }
  }
  if (check) return store;
  if (Status s = store->Migrate(); !s.ok()) return s.Prefixed("cannot use database " + path);
  return store;
}

// A file cyborgfs made has a schema version (a new one is migrated before it
// is linked into place): version 0 is an empty file, a file truncated to
// nothing, or another program's database.
Status Store::Validate(Mode mode) {
  std::lock_guard lock(mu_);
  Statement version(db_, "PRAGMA user_version");
  if (version.Step() != SQLITE_ROW) return DatabaseError(db_, "reading the schema version");
  const int64_t v = version.Int(0);
  Statement application(db_, "PRAGMA application_id");
  const int64_t id = application.Step() == SQLITE_ROW ? application.Int(0) : 0;
  if (v == 0 && mode != Mode::kCreate) {
    struct stat st {};
    const bool empty = fstat(lock_fd_, &st) == 0 && st.st_size == 0;
    return Status::IoError(std::string("it is not a cyborgfs database (") +
                           (empty ? "the file is empty, 0 bytes" : "no cyborgfs schema in it") +
                           "); if it was truncated or replaced, restore it from a backup; to start afresh, remove it");
  }
  if (v > kSchemaVersion) {
    return Status::IoError("schema version " + std::to_string(v) + " is newer than this cyborgfs knows (" +
                           std::to_string(kSchemaVersion) + ")");
  }
  if (id != 0 && id != kApplicationId) {
    return Status::IoError("it is not a cyborgfs database (application_id " + std::to_string(id) + ")");
  }
  return Status::Ok();
}

Store::Store(sqlite3* db, int lock_fd, std::string path, bool read_only)
    : db_(db), lock_fd_(lock_fd), path_(std::move(path)), read_only_(read_only) {}

Store::~Store() {
  {
    std::lock_guard lock(checkpointer_mu_);
    stop_checkpoints_ = true;
  }
  checkpointer_cv_.notify_all();
  if (checkpointer_.joinable()) checkpointer_.join();
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
  close(lock_fd_);  // after SQLite's: closing a descriptor drops the process's fcntl locks on the file
}

sqlite3_stmt* Store::Cached(const std::string& sql) {
  auto [it, added] = statements_.try_emplace(sql, nullptr);
  if (added && sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &it->second, nullptr) != SQLITE_OK) {
    statements_.erase(it);  // retried next time; the caller's Step() reports the error
    return nullptr;
  }
  return it->second;
}

int Store::SchemaVersion() { return kSchemaVersion; }

Status Store::Run(const char* sql) {
  Statement s(db_, Cached(sql));
  if (s.Step() != SQLITE_DONE) return DatabaseError(db_, sql);
  return Status::Ok();
}

Status Store::Exec(const char* sql) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) == SQLITE_OK) return Status::Ok();
  return DatabaseError(db_, sql);
}

Status Store::Health() const {
  std::lock_guard lock(health_mu_);
  return gone_;
}

Status Store::StillAtItsPath() {
  std::lock_guard lock(health_mu_);
  if (read_only_) return Status::ReadOnly("database " + path_ + " is open to check it only");
  if (!gone_.ok()) return gone_;
  struct stat named {
  }, held{};
  if (fstat(lock_fd_, &held) == 0 && stat(path_.c_str(), &named) == 0 && named.st_dev == held.st_dev &&
      named.st_ino == held.st_ino) {
    return Status::Ok();
  }
  gone_ = Status::ReadOnly("database " + path_ +
                           " was moved or deleted while cyborgfs ran: changes are refused, since a restart would not "
                           "find them; restart cyborgfs");
  spdlog::error("{}", gone_.message());
  return gone_;
}

void Store::Checkpoint() {
  std::lock_guard lock(mu_);
  const uint64_t commits = Commits();
  if (commits == checkpointed_at_ || read_only_) return;
  if (sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr) == SQLITE_OK) {
    checkpointed_at_ = commits;
  }
}

void Store::StartCheckpoints(std::chrono::milliseconds interval) {
  if (checkpointer_.joinable()) return;
  checkpointer_ = std::thread([this, interval] {
    std::unique_lock lock(checkpointer_mu_);
    while (!checkpointer_cv_.wait_for(lock, interval, [this] { return stop_checkpoints_; })) {
      lock.unlock();
      Checkpoint();
      lock.lock();
    }
  });
}

Status Store::Migrate() {
  std::lock_guard lock(mu_);
  int64_t version = 0;
  {  // finalized before the migrations: an active statement makes DROP TABLE fail (SQLITE_LOCKED)
    Statement query(db_, "PRAGMA user_version");
    if (query.Step() != SQLITE_ROW) return DatabaseError(db_, "reading the schema version");
    version = query.Int(0);
  }
  for (int64_t v = version; v < kSchemaVersion; ++v) {
    const std::string sql = std::string(kMigrations[v]) + "PRAGMA user_version=" + std::to_string(v + 1) + ";";
    Status s = InTransaction([&] { return Exec(sql.c_str()); });
    if (!s.ok()) return s.Prefixed("migrating to schema version " + std::to_string(v + 1));
  }
  return Status::Ok();
}

struct Store::Change {
  const std::function<Status()>* run;
  Status result;
  bool done = false;
};

Status Store::InTransaction(const std::function<Status()>& body) {
  std::lock_guard lock(mu_);
  if (!sqlite3_get_autocommit(db_)) return body();  // joins the enclosing transaction
  if (Status s = StillAtItsPath(); !s.ok()) return s;
  if (Status s = Run("BEGIN IMMEDIATE"); !s.ok()) return s.Prefixed("database: begin");
  transaction_thread_ = std::this_thread::get_id();
  Status result = body();
  transaction_thread_ = std::thread::id();
  if (result.ok()) result = Run("COMMIT");
  if (!result.ok() && !sqlite3_get_autocommit(db_)) (void)Exec("ROLLBACK");
  if (result.ok()) {
    std::lock_guard count(queue_mu_);
    ++commits_;
  }
  return result;
}

uint64_t Store::Commits() const {
  std::lock_guard lock(queue_mu_);
  return commits_;
}

// The first change to find no commit running leads: it commits every change
// queued by then, then wakes their callers; changes queued meanwhile wait for
// the next leader, which is one of them.
Status Store::Commit(const std::function<Status()>& change) {
  if (transaction_thread_ == std::this_thread::get_id()) return change();  // inside its InTransaction() body
  Change mine{&change, Status::Ok()};
  std::unique_lock lock(queue_mu_);
  queue_.push_back(&mine);
  committed_.wait(lock, [&] { return mine.done || !committing_; });
  if (mine.done) return mine.result;
  committing_ = true;
  std::vector<Change*> batch(queue_.begin(), queue_.end());
  queue_.clear();
  lock.unlock();
  CommitBatch(batch);
  lock.lock();
  ++commits_;
  for (Change* c : batch) c->done = true;
  committing_ = false;
  committed_.notify_all();
  return mine.result;
}

void Store::CommitBatch(const std::vector<Change*>& batch) {
  std::lock_guard lock(mu_);
  if (Status s = StillAtItsPath(); !s.ok()) {
    for (Change* c : batch) c->result = s;
    return;
  }
  RunBatch(batch);
  // A full disk: fold the log back into the database (which may free the
  // room the changes need), and try once more.
  const bool full =
      std::any_of(batch.begin(), batch.end(), [](Change* c) { return c->result.code() == Code::kNoSpace; });
  if (full && sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr) == SQLITE_OK) {
    RunBatch(batch);
  }
}

void Store::RunBatch(const std::vector<Change*>& batch) {
  size_t next = 0;
  while (next < batch.size()) {
    const size_t first = next;
    if (Status begun = Run("BEGIN IMMEDIATE"); !begun.ok()) {
      for (; next < batch.size(); ++next) batch[next]->result = begun.Prefixed("database: begin");
      return;
    }
    // A change that fails undoes its own statement only, and the others
    // commit; unless SQLite rolled the whole transaction back (I/O error,
    // full disk): then the changes before it failed with it, and the rest
    // go in a new transaction.
    for (; next < batch.size() && !sqlite3_get_autocommit(db_); ++next) batch[next]->result = (*batch[next]->run)();
    if (sqlite3_get_autocommit(db_)) {
      const Status lost = batch[next - 1]->result;
      for (size_t k = first; k < next; ++k) batch[k]->result = lost;
      continue;
    }
    if (Status committed = Run("COMMIT"); !committed.ok()) {
      if (!sqlite3_get_autocommit(db_)) (void)Exec("ROLLBACK");
      for (size_t k = first; k < next; ++k) batch[k]->result = committed.Prefixed("database: commit");
    }
  }
}

Status Store::Load(const std::function<void(Accelerator)>& each) {
  std::lock_guard lock(mu_);
  Statement s(db_, std::string("SELECT accelerator_id, ") + kColumns + " FROM accelerators ORDER BY accelerator_id");
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) each(ReadColumns(s));
  if (rc != SQLITE_DONE) return DatabaseError(db_, "loading accelerators");
  return Status::Ok();
}

Result<std::vector<Accelerator>> Store::LoadAll() {
  std::vector<Accelerator> all;
  if (Status s = Load([&](Accelerator a) { all.push_back(std::move(a)); }); !s.ok()) return s;
  return all;
}

uint64_t Store::Count() {
  std::lock_guard lock(mu_);
  Statement count(db_, "SELECT count(*) FROM accelerators");
  return count.Step() == SQLITE_ROW ? static_cast<uint64_t>(count.Int(0)) : 0;
}

Status Store::Insert(Accelerator& accelerator) {
  return Commit([&] {
    static const std::string sql =
        std::string("INSERT INTO accelerators (") + kColumns + ") VALUES (" + Placeholders(kColumnCount) + ")";
    Statement s(db_, Cached(sql));
    BindColumns(s, accelerator);
    if (s.Step() != SQLITE_DONE) return WriteError(db_, accelerator, "inserting " + accelerator.uuid);
    accelerator.id = sqlite3_last_insert_rowid(db_);
    return Status::Ok();
  });
}

Status Store::Update(const Accelerator& accelerator) {
  return Commit([&] {
    static const std::string sql = std::string("UPDATE accelerators SET (") + kColumns + ") = (" +
                                   Placeholders(kColumnCount) + ") WHERE accelerator_id = ? AND generation = ?";
    Statement s(db_, Cached(sql));
    BindColumns(s, accelerator);
    s.Bind(kColumnCount + 1, accelerator.id);
    s.Bind(kColumnCount + 2, accelerator.generation - 1);
    if (s.Step() != SQLITE_DONE) return WriteError(db_, accelerator, "updating " + accelerator.uuid);
    if (sqlite3_changes(db_) != 1) return Status::Busy("accelerator " + accelerator.uuid + " was changed meanwhile");
    return Status::Ok();
  });
}

Status Store::Remove(int64_t id) {
  return Commit([&] {
    Statement s(db_, Cached("DELETE FROM accelerators WHERE accelerator_id = ?"));
    s.Bind(1, id);
    if (s.Step() != SQLITE_DONE) return DatabaseError(db_, "removing accelerator " + std::to_string(id));
    if (sqlite3_changes(db_) != 1) return Status::NotFound("no accelerator with id " + std::to_string(id));
    return Status::Ok();
  });
}

// --- the fleet's outbox ---------------------------------------------------------

// Triggers of this connection only (TEMP): a daemon without --fleet records
// nothing. Each runs inside the statement that changed the row, so the entry
// commits with the change or not at all.
const char* const kOutboxTriggers = R"sql(
    CREATE TEMP TRIGGER IF NOT EXISTS fleet_inserted AFTER INSERT ON main.accelerators BEGIN
      UPDATE fleet_meta SET value = value + 1 WHERE key = 'seq';
      INSERT OR REPLACE INTO fleet_outbox (uuid, seq) SELECT NEW.uuid, value FROM fleet_meta WHERE key = 'seq';
    END;
    CREATE TEMP TRIGGER IF NOT EXISTS fleet_updated AFTER UPDATE ON main.accelerators BEGIN
      UPDATE fleet_meta SET value = value + 1 WHERE key = 'seq';
      INSERT OR REPLACE INTO fleet_outbox (uuid, seq) SELECT NEW.uuid, value FROM fleet_meta WHERE key = 'seq';
    END;
    CREATE TEMP TRIGGER IF NOT EXISTS fleet_deleted AFTER DELETE ON main.accelerators BEGIN
      UPDATE fleet_meta SET value = value + 1 WHERE key = 'seq';
      INSERT OR REPLACE INTO fleet_outbox (uuid, seq) SELECT OLD.uuid, value FROM fleet_meta WHERE key = 'seq';
    END;
)sql";

Result<Store::OutboxStart> Store::StartOutbox(int64_t start_id, int64_t at, size_t lineage) {
  std::lock_guard lock(mu_);
  OutboxStart started;
  started.start_id = start_id;
  Status s = InTransaction([&] {
    if (Status made = Exec(kOutboxTriggers); !made.ok()) return made;
    if (Status bumped = Exec("UPDATE fleet_meta SET value = value + 1 WHERE key = 'epoch'"); !bumped.ok()) {
      return bumped;
    }
    Statement read(db_, "SELECT value FROM fleet_meta WHERE key = 'epoch'");
    if (read.Step() != SQLITE_ROW) return DatabaseError(db_, "reading the fleet epoch");
    started.epoch = read.Int(0);
    Statement add(db_, "INSERT INTO fleet_starts (start_id, epoch, at) VALUES (?, ?, ?)");
    add.Bind(1, start_id);
    add.Bind(2, started.epoch);
    add.Bind(3, at);
    if (add.Step() != SQLITE_DONE) return DatabaseError(db_, "recording the start");
    Statement trim(db_, "DELETE FROM fleet_starts WHERE epoch <= ?");
    trim.Bind(1, started.epoch - static_cast<int64_t>(lineage));
    if (trim.Step() != SQLITE_DONE) return DatabaseError(db_, "forgetting old starts");
    Statement all(db_, "SELECT start_id FROM fleet_starts ORDER BY epoch");
    int rc;
    while ((rc = all.Step()) == SQLITE_ROW) started.lineage.push_back(all.Int(0));
    if (rc != SQLITE_DONE) return DatabaseError(db_, "reading the starts");
    return Status::Ok();
  });
  if (!s.ok()) return s.Prefixed("database: starting the fleet's outbox");
  return started;
}

Result<std::vector<Store::Pending>> Store::PendingChanges(size_t limit) {
  std::lock_guard lock(mu_);
  // The row's columns in ReadColumns' order, through a subquery that names them.
  Statement s(db_, std::string("SELECT o.uuid, o.seq, a.* FROM fleet_outbox o LEFT JOIN (SELECT accelerator_id, ") +
                       kColumns + " FROM accelerators) a ON a.uuid = o.uuid ORDER BY o.seq LIMIT ?");
  s.Bind(1, static_cast<int64_t>(limit));
  std::vector<Pending> pending;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    Pending p{s.Text(0), s.Int(1), std::nullopt};
    if (s.OptionalText(3)) p.now = ReadColumns(s, 2);
    pending.push_back(std::move(p));
  }
  if (rc != SQLITE_DONE) return DatabaseError(db_, "reading the fleet's outbox");
  return pending;
}

Result<Store::Inventory> Store::ReadInventory() {
  std::lock_guard lock(mu_);  // no change commits between the two reads
  Inventory inventory;
  Statement seq(db_, "SELECT value FROM fleet_meta WHERE key = 'seq'");
  if (seq.Step() != SQLITE_ROW) return DatabaseError(db_, "reading the fleet's change number");
  inventory.seq = seq.Int(0);
  auto all = LoadAll();
  if (!all.ok()) return all.status();
  inventory.accelerators = std::move(*all);
  return inventory;
}

Status Store::Published(const std::vector<std::pair<std::string, int64_t>>& entries, int64_t up_to) {
  return InTransaction([&] {
    Statement all(db_, "DELETE FROM fleet_outbox WHERE seq <= ?");
    all.Bind(1, up_to);
    if (all.Step() != SQLITE_DONE) return DatabaseError(db_, "clearing the fleet's outbox");
    for (const auto& [uuid, seq] : entries) {
      Statement one(db_, Cached("DELETE FROM fleet_outbox WHERE uuid = ? AND seq = ?"));
      one.Bind(1, uuid);
      one.Bind(2, seq);
      if (one.Step() != SQLITE_DONE) return DatabaseError(db_, "clearing the fleet's outbox");
    }
    return Status::Ok();
  });
}

uint64_t Store::OutboxDepth() {
  std::lock_guard lock(mu_);
  Statement count(db_, "SELECT count(*) FROM fleet_outbox");
  return count.Step() == SQLITE_ROW ? static_cast<uint64_t>(count.Int(0)) : 0;
}

}  // namespace cyborgfs
