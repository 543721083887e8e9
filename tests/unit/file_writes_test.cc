// The write(2) protocol of the tree's files (FileWrites) over a real Service:
// what write, truncate and rename(2) of a scratch file make of the verbs.
#include "file_writes.h"

#include <gtest/gtest.h>

#include "cyborgfs/drivers.h"
#include "test_db.h"

namespace cyborgfs::fs {
namespace {

const char* kVm1 = "vm 11111111-2222-4333-8444-555555555555\n";
const char* kVm2 = "vm 66666666-7777-4888-9999-aaaaaaaaaaaa\n";

class FileWritesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(*Store::Open(db_.File("db")));
    std::vector<std::unique_ptr<Driver>> drivers;
    drivers.push_back(MakeFakeDriver("testhost", 2));
    service_ = std::make_unique<Service>(*store_, std::move(drivers), "testhost");
    ASSERT_TRUE(service_->Start().ok());
    writes_ = std::make_unique<FileWrites>(*service_, this);
    id_ = service_->List().at(0)->id;
  }
  Service::Snapshot Now() const { return service_->FindById(id_); }
  std::string Render(Attr attr) const { return AttributeInfo(attr).render(*Now()); }
  Result<Service::Change> Write(Attr attr, const std::string& bytes, uint64_t offset = 0) {
    return writes_->Write(id_, attr, offset, bytes, caller_);
  }

  TempDir db_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<FileWrites> writes_;
  Caller caller_ = Caller::Process(0, 0, 1);
  int64_t id_ = 0;
};

TEST_F(FileWritesTest, TextFilesTakeOneValuePerWrite) {
  auto attached = Write(Attr::kAttach, kVm1);
  ASSERT_TRUE(attached.ok()) << attached.status().message();
  EXPECT_EQ(attached->after->state, State::kAttached);
  EXPECT_NE(std::find(attached->files.begin(), attached->files.end(), Attr::kStatus), attached->files.end());
  EXPECT_EQ(Write(Attr::kAttach, kVm2).status().code(), Code::kBusy);
  EXPECT_EQ(Render(Attr::kError).rfind("attach: attached to vm", 0), 0u);
  ASSERT_TRUE(Write(Attr::kAttach, "\n").ok());  // detaches
  EXPECT_EQ(Render(Attr::kAttach), "");
  ASSERT_TRUE(Write(Attr::kName, "card").ok());
  EXPECT_EQ(Render(Attr::kName), "card");  // kept as written
  const int64_t generation = Now()->generation;
  auto again = Write(Attr::kName, "card");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->changed());  // re-applying is harmless
  EXPECT_EQ(Now()->generation, generation);
}

TEST_F(FileWritesTest, BadTextIsRefusedInTheErrorFile) {
  EXPECT_EQ(Write(Attr::kAttach, "lxc 1\n").status().code(), Code::kInvalid);
  EXPECT_EQ(Render(Attr::kError).rfind("attach: expected \"vm <instance-uuid>\"", 0), 0u) << Render(Attr::kError);
  EXPECT_EQ(Write(Attr::kName, std::string(5000, 'n')).status().code(), Code::kTooLarge);
  EXPECT_EQ(Render(Attr::kError), "name: value of 5000 bytes, at most 4096 are allowed\n");
}

TEST_F(FileWritesTest, ReadOnlyFilesRefuseWrites) {
  EXPECT_EQ(Write(Attr::kStatus, "offline").status().code(), Code::kAccessDenied);
  EXPECT_EQ(writes_->Write(999, Attr::kSpec, 0, "{}", caller_).status().code(), Code::kNotFound);
}

TEST_F(FileWritesTest, CreateFileTakesABodyInPieces) {
  const size_t before = service_->List().size();
  ASSERT_TRUE(writes_->WriteCreate(0, "{\"name\": \"IPSec", caller_).ok());
  EXPECT_EQ(service_->List().size(), before);
  auto made = writes_->WriteCreate(15, " Card\"}", caller_);
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ(made->after->name, "IPSec Card");
  EXPECT_TRUE(writes_->WriteCreate(22, "\n", caller_).ok());  // a repeat, not a second create
  EXPECT_EQ(service_->List().size(), before + 1);
  EXPECT_EQ(writes_->WriteCreate(0, "{\"name\": \"IPSec Card\"}", caller_).status().code(), Code::kExists);
  EXPECT_EQ(writes_->WriteCreate(0, "{\"name\": \"a\", \"name\": \"b\"}", caller_).status().code(), Code::kInvalid);
}

TEST_F(FileWritesTest, ADocumentInPiecesWaitsThenApplies) {
  ASSERT_TRUE(Write(Attr::kSpec, "{\"num\":").ok());
  EXPECT_EQ(Render(Attr::kSpec), "{}\n");
  EXPECT_NE(Render(Attr::kError).find("waiting for the rest"), std::string::npos);
  auto done = Write(Attr::kSpec, " 2}\n", 7);
  ASSERT_TRUE(done.ok()) << done.status().message();
  EXPECT_EQ(Render(Attr::kSpec), "{\"num\": 2}\n");
  EXPECT_EQ(Render(Attr::kError), "");
}

TEST_F(FileWritesTest, APatchInsideTheValueGivesThePatchedDocument) {
  ASSERT_TRUE(Write(Attr::kSpec, "{\"num\": 1, \"device_type\": \"GPU\"}").ok());
  auto patched = Write(Attr::kSpec, "2", 8);  // dd conv=notrunc seek=8
  ASSERT_TRUE(patched.ok()) << patched.status().message();
  EXPECT_EQ(Render(Attr::kSpec), "{\"num\": 2, \"device_type\": \"GPU\"}");
}

TEST_F(FileWritesTest, ReplaceCommitsAWholeValueLikeOneWrite) {
  ASSERT_TRUE(writes_->Replace(id_, Attr::kSpec, "{\"num\": 2}", "sedAb12", caller_).ok());
  EXPECT_EQ(Render(Attr::kSpec), "{\"num\": 2}");
  ASSERT_TRUE(writes_->Replace(id_, Attr::kAttach, kVm1, ".attach.x", caller_).ok());
  EXPECT_EQ(Now()->state, State::kAttached);
  const int64_t generation = Now()->generation;
  ASSERT_TRUE(writes_->Replace(id_, Attr::kAttach, kVm1, ".attach.y", caller_).ok());  // the same value
  EXPECT_EQ(Now()->generation, generation);
  EXPECT_EQ(writes_->Replace(id_, Attr::kAttach, kVm2, ".attach.z", caller_).status().code(), Code::kBusy);
  EXPECT_EQ(Render(Attr::kError).rfind("attach (renamed from .attach.z): attached to", 0), 0u);
}

TEST_F(FileWritesTest, ReplaceRefusesInvalidIncompleteAndOversizedValuesAsInvalid) {
  const Service::Snapshot before = Now();
  for (const std::string& bad : {std::string("{\"num\": 1"), std::string(""), std::string("{\"num\": 0}"),
                                 "{\"blob\": \"" + std::string(kMaxDocumentBytes, 'x') + "\"}"}) {
    Status s = writes_->Replace(id_, Attr::kSpec, bad, "sedAb12", caller_).status();
    EXPECT_EQ(s.code(), Code::kInvalid) << bad.substr(0, 20);
    EXPECT_NE(Now()->last_error.find("renamed from sedAb12"), std::string::npos);
  }
  EXPECT_EQ(writes_->Replace(id_, Attr::kName, std::string(5000, 'n'), "x", caller_).status().code(), Code::kInvalid);
  EXPECT_EQ(writes_->Replace(id_, Attr::kStatus, "available\n", "x", caller_).status().code(), Code::kAccessDenied);
  EXPECT_EQ(Now()->generation, before->generation);
  EXPECT_EQ(Render(Attr::kSpec), AttributeInfo(Attr::kSpec).render(*before));
}

TEST_F(FileWritesTest, TruncateCompletesADocumentBeingWrittenAndAloneChangesNothing) {
  ASSERT_TRUE(writes_->Truncate(id_, Attr::kSpec, 1, caller_).ok());
  EXPECT_EQ(Render(Attr::kSpec), "{}\n");
  ASSERT_EQ(Write(Attr::kSpec, "{\"num\": 3}xx").status().code(), Code::kInvalid);
  ASSERT_TRUE(Write(Attr::kSpec, "{\"num\": 3").ok());
  ASSERT_TRUE(writes_->Truncate(id_, Attr::kSpec, 9, caller_).ok());
  ASSERT_TRUE(Write(Attr::kSpec, "}\n", 9).ok());
  EXPECT_EQ(Render(Attr::kSpec), "{\"num\": 3}\n");
  const std::string name = Render(Attr::kName);
  EXPECT_TRUE(writes_->Truncate(id_, Attr::kName, 0, caller_).ok());
  EXPECT_EQ(Render(Attr::kName), name);
}

TEST_F(FileWritesTest, RescanTakesOnly1) {
  EXPECT_TRUE(writes_->WriteRescan("1\n", caller_).ok());
  EXPECT_EQ(writes_->WriteRescan("yes", caller_).code(), Code::kInvalid);
}

// What fleet/requests/create hands the fleet: the requests a fake fleet was
// asked to make, and what it answers.
class RecordedRequests : public AcceleratorRequests {
 public:
  Result<Json> Create(const Json& body, Taken taken, const Caller&) override {
    made.push_back(body);
    takens.push_back(taken);
    if (!answer.ok()) return answer;
    return Json{{"uuid", "aaaaaaaa-2222-4333-8444-555555555555"}, {"state", "BindStarted"}};
  }
  Result<Json> Get(const std::string&) override { return Status::NotFound("none"); }
  Result<Json> List(const std::optional<std::string>&) override { return Json{{"arqs", Json::array()}}; }
  Status Delete(const std::string&, const Caller&) override { return Status::NotFound("none"); }

  std::vector<Json> made;
  std::vector<Taken> takens;
  Status answer = Status::Ok();
};

TEST_F(FileWritesTest, ARequestBodyInPiecesMakesOneRequestWhenComplete) {
  RecordedRequests fleet;
  FileWrites writes(*service_, this, &fleet);
  const std::string body = R"({"device_type": "GPU", "instance_uuid": "11111111-2222-4333-8444-555555555555"})";
  auto first = writes.WriteRequest(0, body.substr(0, 10), caller_);
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(*first) << "not complete yet";
  EXPECT_TRUE(fleet.made.empty());
  auto second = writes.WriteRequest(10, body.substr(10) + "\n", caller_);
  ASSERT_TRUE(second.ok()) << second.status().message();
  ASSERT_TRUE(*second);
  EXPECT_EQ((**second)["state"], "BindStarted");
  ASSERT_EQ(fleet.made.size(), 1u);
  EXPECT_EQ(fleet.made[0], Json::parse(body));
  EXPECT_EQ(fleet.takens[0], AcceleratorRequests::Taken::kSameIsDone) << "writing it again is a no-op";
}

TEST_F(FileWritesTest, ARequestTheFleetRefusesIsTheWritesErrorAndMayBeWrittenAgain) {
  RecordedRequests fleet;
  FileWrites writes(*service_, this, &fleet);
  EXPECT_EQ(writes.WriteRequest(0, "{\"a\": 1, \"a\": 2}", caller_).status().code(), Code::kInvalid)
      << "a key given twice";
  EXPECT_EQ(writes.WriteRequest(0, "[1]x", caller_).status().code(), Code::kInvalid);
  EXPECT_TRUE(fleet.made.empty());
  fleet.answer = Status::Unavailable("the fleet's PostgreSQL cannot be reached");
  auto away = writes.WriteRequest(0, "{\"device_type\": \"GPU\"}", caller_);
  EXPECT_EQ(away.status().code(), Code::kUnavailable);
  EXPECT_EQ(away.status().message().rfind("fleet/requests/create: ", 0), 0u) << away.status().message();
  fleet.answer = Status::Ok();
  auto again = writes.WriteRequest(0, "{\"device_type\": \"GPU\"}", caller_);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again);
  EXPECT_EQ(fleet.made.size(), 2u);
}

}  // namespace
}  // namespace cyborgfs::fs
