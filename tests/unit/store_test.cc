#include "cyborgfs/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "cyborgfs/values.h"
#include "test_db.h"

namespace cyborgfs {
namespace {

// Runs `sql` on the file at `path` over a connection of its own, as another
// program would (to make files of older schemas); sqlite3_exec's code.
int ExecOnFile(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open(path.c_str(), &db);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return rc;
}

Accelerator Sample(const std::string& uuid, const std::string& name) {
  Accelerator a;
  a.uuid = uuid;
  a.name = name;
  a.created_at = a.updated_at = 1700000000;
  return a;
}

const char* kU1 = "8e45a2ea-5364-4b0d-a252-bf8becaa606e";
const char* kU2 = "eaaf1c04-ced2-40e4-89a2-87edded06d64";

TEST(Store, CreatesAndMigratesANewFile) {
  TempDir dir;
  auto store = Store::Open(dir.File("db"));
  ASSERT_TRUE(store.ok()) << store.status().message();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir.File("db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), Store::SchemaVersion());
  sqlite3_finalize(stmt);
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST(Store, KeepsEveryFieldAcrossReopening) {
  TempDir dir;
  Accelerator a = Sample(kU1, "IPSec Card");
  a.spec = R"({"num":1})";
  a.spec_bytes = "{\"num\": 1}\n";
  a.name_bytes = std::string("IPSec Card", 10);
  a.state = State::kAttached;
  a.attachment = "vm x";
  a.attach_handle = R"({"type":"TEST_PCI"})";
  a.driver = "fake";
  a.vendor_id = "8086";
  a.remotable = true;
  a.facts.kernel_driver = "nvidia";
  a.facts.numa_node = 1;
  a.facts.virtfns = {"0000:3b:00.4"};
  a.facts.mdev_types["nvidia-222"] = {"GRID T4-1B", 16};
  a.facts.health = "failed";
  a.facts.health_reasons = {"power state error"};
  a.facts.aer_fatal = 2;
  a.maintenance = true;
  {
    auto store = Store::Open(dir.File("db"));
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Insert(a).ok());
    EXPECT_GT(a.id, 0);
  }
  auto store = Store::Open(dir.File("db"));
  ASSERT_TRUE(store.ok());
  auto all = (*store)->LoadAll();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  const Accelerator& b = all->front();
  EXPECT_EQ(b.id, a.id);
  EXPECT_EQ(b.uuid, a.uuid);
  EXPECT_EQ(b.spec_bytes, a.spec_bytes);
  EXPECT_EQ(b.name_bytes, a.name_bytes);
  EXPECT_FALSE(b.attach_bytes.has_value());
  EXPECT_EQ(b.state, State::kAttached);
  EXPECT_EQ(b.attach_handle, a.attach_handle);
  EXPECT_TRUE(b.remotable);
  EXPECT_EQ(b.vendor_id, "8086");
  EXPECT_EQ(b.facts, a.facts);
  EXPECT_TRUE(b.maintenance);
}

TEST(Store, MigratesAVersion1FileKeepingItsRows) {
  TempDir dir;
  {
    auto store = Store::Open(dir.File("db"));
    ASSERT_TRUE(store.ok());
    Accelerator a = Sample(kU1, "old");
    ASSERT_TRUE((*store)->Insert(a).ok());
  }
  ASSERT_EQ(ExecOnFile(dir.File("db"),
                       "DROP TABLE fleet_outbox; DROP TABLE fleet_starts; DROP TABLE fleet_meta; "
                       "ALTER TABLE accelerators DROP COLUMN detaching; "
                       "ALTER TABLE accelerators DROP COLUMN host_facts; "
                       "ALTER TABLE accelerators DROP COLUMN driver_memory; "
                       "ALTER TABLE accelerators DROP COLUMN held_by; "
                       "ALTER TABLE accelerators DROP COLUMN maintenance; PRAGMA user_version=1"),
            SQLITE_OK);
  auto store = Store::Open(dir.File("db"));
  ASSERT_TRUE(store.ok()) << store.status().message();
  auto all = (*store)->LoadAll();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ(all->front().name, "old");
  EXPECT_EQ(all->front().facts, HostFacts{});
}

TEST(Store, MigratesTheErrorStateOfVersion2AsAFailedDetach) {
  TempDir dir;
  {
    auto store = Store::Open(dir.File("db"));
    ASSERT_TRUE(store.ok());
    Accelerator a = Sample(kU1, "old");
    a.driver = "fake";
    a.state = State::kError;
    a.attachment = "vm 11111111-2222-4333-8444-555555555555";
    ASSERT_TRUE((*store)->Insert(a).ok());
  }
  ASSERT_EQ(ExecOnFile(dir.File("db"),
                       "DROP TABLE fleet_outbox; DROP TABLE fleet_starts; DROP TABLE fleet_meta; "
                       "ALTER TABLE accelerators DROP COLUMN detaching; "
                       "ALTER TABLE accelerators DROP COLUMN held_by; "
                       "ALTER TABLE accelerators DROP COLUMN maintenance; PRAGMA user_version=2"),
            SQLITE_OK);
  auto store = Store::Open(dir.File("db"));
  ASSERT_TRUE(store.ok()) << store.status().message();
  EXPECT_TRUE((*store)->LoadAll()->front().detaching);
}

TEST(Store, UuidAndNameAreUnique) {
  TempDir dir;
  auto store = Store::Open(dir.File("db"));
  Accelerator a = Sample(kU1, "one");
  ASSERT_TRUE((*store)->Insert(a).ok());
  Accelerator same_uuid = Sample(kU1, "two");
  Status s = (*store)->Insert(same_uuid);
  EXPECT_EQ(s.code(), Code::kExists);
  EXPECT_NE(s.message().find("uuid"), std::string::npos);
  Accelerator same_name = Sample(kU2, "one");
  s = (*store)->Insert(same_name);
  EXPECT_EQ(s.code(), Code::kExists);
  EXPECT_NE(s.message().find("name"), std::string::npos);
}

TEST(Store, UpdateChecksTheGeneration) {
  TempDir dir;
  auto store = Store::Open(dir.File("db"));
  Accelerator a = Sample(kU1, "one");
  ASSERT_TRUE((*store)->Insert(a).ok());
  Accelerator next = a;
  next.generation = 2;
  next.name = "renamed";
  ASSERT_TRUE((*store)->Update(next).ok());
  EXPECT_EQ((*store)->Update(next).code(), Code::kBusy);  // generation 1 is gone
  EXPECT_EQ((*store)->LoadAll()->front().name, "renamed");
}

TEST(Store, RemoveAndTransactions) {
  TempDir dir;
  auto store = Store::Open(dir.File("db"));
  Accelerator a = Sample(kU1, "one");
  ASSERT_TRUE((*store)->Insert(a).ok());
  Status failed = (*store)->InTransaction([&] {
    EXPECT_TRUE((*store)->Remove(a.id).ok());
    return Status::IoError("abandon");
  });
  EXPECT_EQ(failed.code(), Code::kIoError);
  EXPECT_EQ((*store)->LoadAll()->size(), 1u);  // rolled back
  EXPECT_TRUE((*store)->Remove(a.id).ok());
  EXPECT_EQ((*store)->Remove(a.id).code(), Code::kNotFound);
  EXPECT_TRUE((*store)->LoadAll()->empty());
}

TEST(Store, ConcurrentChangesShareCommits) {
  TempDir dir;
  auto store = Store::Open(dir.File("db"), Store::Sync::kFull);
  constexpr int kWriters = 8;
  std::vector<Accelerator> rows;
  for (int i = 0; i < kWriters; ++i) {
    rows.push_back(Sample(NameBasedUuid("row/" + std::to_string(i)), "row-" + std::to_string(i)));
    ASSERT_TRUE((*store)->Insert(rows.back()).ok());
  }
  const uint64_t before = (*store)->Commits();
  std::vector<std::thread> writers;
  Status held = (*store)->InTransaction([&] {  // holds the connection while the writers queue up
    for (int i = 0; i < kWriters; ++i) {
      writers.emplace_back([&, i] {
        Accelerator next = rows[static_cast<size_t>(i)];
        next.generation = 2;
        next.name = "renamed-" + std::to_string(i);
        EXPECT_TRUE((*store)->Update(next).ok());
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return Status::Ok();
  });
  ASSERT_TRUE(held.ok());
  for (auto& w : writers) w.join();
  // The first writer's commit waited for the connection; all others joined the next one.
  EXPECT_LE((*store)->Commits() - before, 1u + 2u);
  auto all = (*store)->LoadAll();
  ASSERT_TRUE(all.ok());
  for (const Accelerator& a : *all) EXPECT_EQ(a.name.rfind("renamed-", 0), 0u) << a.name;
}

TEST(Store, AFailingChangeLeavesTheOthersOfItsCommit) {
  TempDir dir;
  auto store = Store::Open(dir.File("db"));
  Accelerator one = Sample(kU1, "one");
  ASSERT_TRUE((*store)->Insert(one).ok());
  Accelerator taken = Sample(NameBasedUuid("x"), "one");  // a name that is taken
  EXPECT_EQ((*store)->Insert(taken).code(), Code::kExists);
  Accelerator two = Sample(NameBasedUuid("y"), "two");
  EXPECT_TRUE((*store)->Insert(two).ok());
  EXPECT_EQ((*store)->LoadAll()->size(), 2u);
}

TEST(Store, OneStorePerDatabaseAtATime) {
  TempDir dir;
  auto first = Store::Open(dir.File("db"));
  ASSERT_TRUE(first.ok());
  auto second = Store::Open(dir.File("db"));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kBusy);
  EXPECT_NE(second.status().message().find("in use by another cyborgfs"), std::string::npos);
  first->reset();  // closing the first frees the file
  EXPECT_TRUE(Store::Open(dir.File("db")).ok());
}

TEST(Store, RefusesUnusableFiles) {
  TempDir dir;
  EXPECT_EQ(Store::Open(dir.File("missing/dir/db")).status().code(), Code::kIoError);
  std::ofstream(dir.File("text")) << std::string(2000, 'x');
  auto text = Store::Open(dir.File("text"));
  EXPECT_EQ(text.status().code(), Code::kIoError);
  EXPECT_NE(text.status().message().find("not a database"), std::string::npos);
  ASSERT_EQ(ExecOnFile(dir.File("future"), "PRAGMA user_version=999"), SQLITE_OK);
  auto future = Store::Open(dir.File("future"));
  EXPECT_NE(future.status().message().find("newer"), std::string::npos);
}

// The fleet's outbox: nothing without StartOutbox; then one entry per
// accelerator, its latest change, committed with it; forgotten only as
// published and unchanged since.
TEST(Store, TheOutboxKeepsTheLatestChangeOfEachAcceleratorUntilPublished) {
  TempDir dir;
  auto store = Store::Open(dir.File("db"));
  ASSERT_TRUE(store.ok());
  Accelerator a = Sample(kU1, "a"), b = Sample(kU2, "b");
  ASSERT_TRUE((*store)->Insert(a).ok());
  EXPECT_EQ((*store)->OutboxDepth(), 0u) << "no outbox before it is started";
  auto started = (*store)->StartOutbox(111, 1000);
  ASSERT_TRUE(started.ok()) << started.status().message();
  EXPECT_EQ(started->epoch, 1);
  EXPECT_EQ(started->lineage, std::vector<int64_t>{111});
  ASSERT_TRUE((*store)->Insert(b).ok());
  for (int i = 0; i < 3; ++i) {
    a.generation += 1;
    a.spec = "{\"num\":" + std::to_string(i) + "}";
    ASSERT_TRUE((*store)->Update(a).ok());
  }
  auto pending = (*store)->PendingChanges(10);
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 2u) << "one entry per accelerator, however many changes";
  EXPECT_EQ((*pending)[0].uuid, kU2);  // oldest change first
  EXPECT_EQ((*pending)[0].seq, 1);
  EXPECT_EQ((*pending)[1].uuid, kU1);
  EXPECT_EQ((*pending)[1].seq, 4);
  ASSERT_TRUE((*pending)[1].now);
  EXPECT_EQ((*pending)[1].now->spec, "{\"num\":2}");
  // Removed: an entry without a row. Changed after being read: kept.
  ASSERT_TRUE((*store)->Remove(b.id).ok());
  a.generation += 1;
  ASSERT_TRUE((*store)->Update(a).ok());
  ASSERT_TRUE((*store)->Published({{kU1, 4}, {kU2, 1}}).ok());
  pending = (*store)->PendingChanges(10);
  ASSERT_EQ(pending->size(), 2u);
  EXPECT_EQ((*pending)[0].uuid, kU2);
  EXPECT_FALSE((*pending)[0].now) << "a removed accelerator";
  EXPECT_EQ((*pending)[1].seq, 6);
  auto inventory = (*store)->ReadInventory();
  ASSERT_TRUE(inventory.ok());
  EXPECT_EQ(inventory->seq, 6);
  EXPECT_EQ(inventory->accelerators.size(), 1u);
  ASSERT_TRUE((*store)->Published({}, inventory->seq).ok());
  EXPECT_EQ((*store)->OutboxDepth(), 0u);
}

TEST(Store, MigratesAVersion5OutboxKeepingItsEntries) {
  TempDir dir;
  {
    auto store = Store::Open(dir.File("db"));
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->StartOutbox(1, 1).ok());
    Accelerator a = Sample(kU1, "a"), b = Sample(kU2, "b");
    ASSERT_TRUE((*store)->Insert(a).ok());
    ASSERT_TRUE((*store)->Insert(b).ok());
  }
  ASSERT_EQ(
      ExecOnFile(dir.File("db"),  // the outbox as version 5 made it
                 "CREATE TABLE old (uuid TEXT PRIMARY KEY, seq INTEGER NOT NULL); "
                 "INSERT INTO old SELECT uuid, seq FROM fleet_outbox; DROP TABLE fleet_outbox; "
                 "ALTER TABLE old RENAME TO fleet_outbox; CREATE INDEX fleet_outbox_by_seq ON fleet_outbox (seq); "
                 "ALTER TABLE accelerators DROP COLUMN held_by; "
                 "ALTER TABLE accelerators DROP COLUMN maintenance; PRAGMA user_version=5"),
      SQLITE_OK);
  auto store = Store::Open(dir.File("db"));
  ASSERT_TRUE(store.ok()) << store.status().message();
  auto pending = (*store)->PendingChanges(10);
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 2u);
  EXPECT_EQ((*pending)[0].uuid, kU1);
  EXPECT_EQ((*pending)[1].seq, 2);
}

TEST(Store, EachStartOfTheOutboxIsAnEpochOfTheFilesLineage) {
  TempDir dir;
  std::string copy = dir.File("copy");
  {
    auto store = Store::Open(dir.File("db"));
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->StartOutbox(7, 1).ok());
  }
  std::filesystem::copy_file(dir.File("db"), copy);
  for (int64_t id : {8, 9}) {
    auto store = Store::Open(dir.File("db"));
    auto started = (*store)->StartOutbox(id, 2, 2);
    ASSERT_TRUE(started.ok());
    EXPECT_EQ(started->epoch, id - 6);
  }
  auto store = Store::Open(dir.File("db"));
  EXPECT_EQ((*store)->StartOutbox(10, 3, 2)->lineage, (std::vector<int64_t>{9, 10})) << "the last 2 starts";
  auto old = Store::Open(copy);
  EXPECT_EQ((*old)->StartOutbox(11, 3)->lineage, (std::vector<int64_t>{7, 11})) << "a copy knows none made since";
}

}  // namespace
}  // namespace cyborgfs
