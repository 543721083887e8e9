#include "cyborgfs/service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "cyborgfs/drivers.h"
#include "test_db.h"

namespace cyborgfs {
namespace {

const char* kU1 = "8e45a2ea-5364-4b0d-a252-bf8becaa606e";
const char* kVm1 = "vm 11111111-2222-4333-8444-555555555555\n";
const char* kVm2 = "vm 66666666-7777-4888-9999-aaaaaaaaaaaa\n";

// A driver whose host steps fail on demand, to check rollback and the error
// state. It wraps the real fake driver.
class FlakyDriver : public Driver {
 public:
  std::string Name() const override { return "fake"; }
  Result<std::vector<DiscoveredDevice>> Discover() override { return real_->Discover(); }
  Result<std::string> Attach(const std::string& address, const AttachTarget& target, std::string& memory) override {
    if (fail_attach) return Status::IoError("bind to vfio-pci failed");
    return real_->Attach(address, target, memory);
  }
  Status Detach(const std::string& address, std::string& memory) override {
    if (fail_detach) return Status::IoError("unbind failed");
    return real_->Detach(address, memory);
  }
  std::atomic<bool> fail_attach{false};
  std::atomic<bool> fail_detach{false};

 private:
  std::unique_ptr<Driver> real_ = MakeFakeDriver("testhost", 2);
};

class ServiceTest : public ::testing::Test {
 protected:
  void Open(int fake_devices = 4) {
    service_.reset();
    store_.reset();
    store_ = std::move(*Store::Open(db_.File("db")));
    std::vector<std::unique_ptr<Driver>> drivers;
    if (fake_devices > 0) drivers.push_back(MakeFakeDriver("testhost", fake_devices));
    service_ = std::make_unique<Service>(*store_, std::move(drivers), "testhost");
    ASSERT_TRUE(service_->Start().ok());
  }
  FlakyDriver* OpenFlaky() {
    service_.reset();
    store_.reset();  // one Store per database at a time: it locks the file
    store_ = std::move(*Store::Open(db_.File("db")));
    auto flaky = std::make_unique<FlakyDriver>();
    FlakyDriver* raw = flaky.get();
    std::vector<std::unique_ptr<Driver>> drivers;
    drivers.push_back(std::move(flaky));
    service_ = std::make_unique<Service>(*store_, std::move(drivers), "testhost");
    EXPECT_TRUE(service_->Start().ok());
    return raw;
  }
  Service::Snapshot Driven(size_t index) { return service_->List().at(index); }
  std::string Render(const Service::Snapshot& a, Attr attr) { return AttributeInfo(attr).render(*a); }
  Status Write(int64_t id, Attr attr, const std::string& text) { return service_->Write(id, attr, 0, text); }

  TempDir db_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Service> service_;
};

TEST_F(ServiceTest, AdoptsDriverDevicesWithStableUuids) {
  Open();
  auto first = service_->List();
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(first[0]->driver, "fake");
  EXPECT_EQ(first[0]->device_type, "GPU");
  EXPECT_EQ(first[0]->vendor_id, "10de");
  Open();
  auto second = service_->List();
  ASSERT_EQ(second.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(first[i]->uuid, second[i]->uuid);
}

TEST_F(ServiceTest, UnreportedDevicesGoOfflineKeepingTheirRecord) {
  Open(4);
  const int64_t last = Driven(3)->id;
  Open(3);
  EXPECT_EQ(service_->FindById(last)->state, State::kOffline);
  EXPECT_EQ(Write(last, Attr::kAttach, kVm1).code(), Code::kNoDevice);
  EXPECT_TRUE(service_->Remove(last).ok());
  EXPECT_EQ(service_->List().size(), 3u);
}

TEST_F(ServiceTest, CreateWithUuidChecksFormAndUniqueness) {
  Open(0);
  EXPECT_TRUE(service_->CreateWithUuid(kU1).ok());
  EXPECT_EQ(service_->CreateWithUuid(kU1).code(), Code::kExists);
  EXPECT_EQ(service_->CreateWithUuid("8E45A2EA-5364-4B0D-A252-BF8BECAA606E").code(), Code::kInvalid);
  auto a = service_->FindByUuid(kU1);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->name, kU1);
  EXPECT_EQ(Render(a, Attr::kSpec), "{}\n");
  EXPECT_EQ(a->state, State::kAvailable);
}

TEST_F(ServiceTest, CreateFileTakesABodyInPieces) {
  Open(0);
  ASSERT_TRUE(service_->WriteCreate(0, "{\"name\": \"IPSec").ok());
  EXPECT_TRUE(service_->List().empty());
  ASSERT_TRUE(service_->WriteCreate(15, " Card\"}").ok());
  ASSERT_TRUE(service_->FindByName("IPSec Card"));
  EXPECT_TRUE(service_->WriteCreate(22, "\n").ok());  // a repeat, not a second create
  EXPECT_EQ(service_->List().size(), 1u);
  EXPECT_EQ(service_->WriteCreate(0, "{\"name\": \"IPSec Card\"}").code(), Code::kExists);
}

TEST_F(ServiceTest, SpecWritesApplyDeriveAndRejectWithoutChange) {
  Open(0);
  ASSERT_TRUE(service_->CreateWithUuid(kU1).ok());
  const int64_t id = service_->FindByUuid(kU1)->id;
  ASSERT_TRUE(Write(id, Attr::kSpec, R"({"device_type": "CRYPTO", "remote": 1, "acc_capability": {"num": 2}})").ok());
  auto a = service_->FindById(id);
  EXPECT_EQ(a->device_type, "CRYPTO");
  EXPECT_TRUE(a->remotable);
  EXPECT_EQ(a->acc_capability, R"({"num":2})");
  const int64_t generation = a->generation;
  Status bad = Write(id, Attr::kSpec, R"({"num": 0})");
  EXPECT_EQ(bad.code(), Code::kInvalid);
  a = service_->FindById(id);
  EXPECT_EQ(a->generation, generation);
  EXPECT_EQ(a->device_type, "CRYPTO");
  EXPECT_EQ(a->last_error, bad.message());
  EXPECT_EQ(bad.message().rfind("spec: ", 0), 0u);
}

TEST_F(ServiceTest, RewritingTheSameBytesStoresNothing) {
  Open(0);
  ASSERT_TRUE(service_->CreateWithUuid(kU1).ok());
  const int64_t id = service_->FindByUuid(kU1)->id;
  ASSERT_TRUE(Write(id, Attr::kName, "card\n").ok());
  const int64_t generation = service_->FindById(id)->generation;
  ASSERT_TRUE(Write(id, Attr::kName, "card\n").ok());
  EXPECT_EQ(service_->FindById(id)->generation, generation);
  ASSERT_TRUE(Write(id, Attr::kName, "card").ok());  // same meaning, other bytes
  EXPECT_EQ(Render(service_->FindById(id), Attr::kName), "card");
}

TEST_F(ServiceTest, AttachDetachThroughTheDriver) {
  Open();
  const int64_t id = Driven(0)->id;
  ASSERT_TRUE(Write(id, Attr::kAttach, kVm1).ok());
  auto a = service_->FindById(id);
  EXPECT_EQ(a->state, State::kAttached);
  EXPECT_NE(a->attach_handle.find("TEST_PCI"), std::string::npos);
  EXPECT_TRUE(Write(id, Attr::kAttach, kVm1).ok());
  EXPECT_EQ(Write(id, Attr::kAttach, kVm2).code(), Code::kBusy);
  EXPECT_EQ(service_->Remove(id).code(), Code::kBusy);
  ASSERT_TRUE(Write(id, Attr::kAttach, "\n").ok());
  a = service_->FindById(id);
  EXPECT_EQ(a->state, State::kAvailable);
  EXPECT_EQ(Render(a, Attr::kAttach), "");
  EXPECT_EQ(Render(a, Attr::kAttachHandle), "");
  EXPECT_TRUE(Write(id, Attr::kAttach, "").ok());
}

TEST_F(ServiceTest, AFailedDriverAttachChangesNothing) {
  FlakyDriver* driver = OpenFlaky();
  const int64_t id = Driven(0)->id;
  driver->fail_attach = true;
  Status s = Write(id, Attr::kAttach, kVm1);
  EXPECT_EQ(s.code(), Code::kIoError);
  EXPECT_NE(s.message().find("vfio-pci"), std::string::npos);
  EXPECT_EQ(service_->FindById(id)->state, State::kAvailable);
  EXPECT_EQ(store_->LoadAll()->front().state, State::kAvailable);
}

TEST_F(ServiceTest, AFailedDriverDetachIsTheErrorStateAndCanBeRetried) {
  FlakyDriver* driver = OpenFlaky();
  const int64_t id = Driven(0)->id;
  ASSERT_TRUE(Write(id, Attr::kAttach, kVm1).ok());
  driver->fail_detach = true;
  EXPECT_EQ(Write(id, Attr::kAttach, "\n").code(), Code::kIoError);
  EXPECT_EQ(service_->FindById(id)->state, State::kError);
  EXPECT_EQ(service_->FindById(id)->attachment, "vm 11111111-2222-4333-8444-555555555555");
  driver->fail_detach = false;
  ASSERT_TRUE(Write(id, Attr::kAttach, "\n").ok());
  EXPECT_EQ(service_->FindById(id)->state, State::kAvailable);
}

TEST_F(ServiceTest, RacingAttachesLetExactlyOneWin) {
  Open(0);
  for (int round = 0; round < 50; ++round) {
    const std::string uuid = RandomUuid();
    ASSERT_TRUE(service_->CreateWithUuid(uuid).ok());
    const int64_t id = service_->FindByUuid(uuid)->id;
    std::atomic<int> wins{0}, busy{0};
    auto attach = [&](const char* target) {
      Status s = Write(id, Attr::kAttach, target);
      (s.ok() ? wins : busy)++;
      EXPECT_TRUE(s.ok() || s.code() == Code::kBusy) << s.message();
    };
    std::thread a(attach, kVm1), b(attach, kVm2);
    a.join();
    b.join();
    EXPECT_EQ(wins, 1);
    EXPECT_EQ(busy, 1);
  }
}

TEST_F(ServiceTest, ReportedAcceleratorsAreNotRemovable) {
  Open();
  Status s = service_->Remove(Driven(0)->id);
  EXPECT_EQ(s.code(), Code::kBusy);
  EXPECT_NE(service_->FindById(Driven(0)->id)->last_error.find("still reported"), std::string::npos);
}

TEST_F(ServiceTest, ReadOnlyFilesRefuseWrites) {
  Open();
  EXPECT_EQ(Write(Driven(0)->id, Attr::kStatus, "offline").code(), Code::kAccessDenied);
  EXPECT_EQ(Write(999, Attr::kSpec, "{}").code(), Code::kNotFound);
}

TEST_F(ServiceTest, CommittedChangesSurviveANewProcess) {
  Open();
  const int64_t id = Driven(1)->id;
  ASSERT_TRUE(Write(id, Attr::kSpec, "{\"num\": 4}").ok());
  ASSERT_TRUE(Write(id, Attr::kAttach, "host testhost").ok());
  Open();
  auto a = service_->FindById(id);
  EXPECT_EQ(Render(a, Attr::kSpec), "{\"num\": 4}");
  EXPECT_EQ(a->state, State::kAttached);
  EXPECT_EQ(Render(a, Attr::kAttach), "host testhost");
}

}  // namespace
}  // namespace cyborgfs

namespace cyborgfs {
namespace {

TEST_F(ServiceTest, ReplaceCommitsAWholeValueLikeOneWrite) {
  Open();
  const int64_t id = Driven(0)->id;
  ASSERT_TRUE(service_->Replace(id, Attr::kSpec, "{\"num\": 2}", "sedAb12").ok());
  EXPECT_EQ(Render(service_->FindById(id), Attr::kSpec), "{\"num\": 2}");
  ASSERT_TRUE(service_->Replace(id, Attr::kAttach, kVm1, ".attach.x").ok());
  EXPECT_EQ(service_->FindById(id)->state, State::kAttached);
  const int64_t generation = service_->FindById(id)->generation;
  ASSERT_TRUE(service_->Replace(id, Attr::kAttach, kVm1, ".attach.y").ok());  // the same value: no change
  EXPECT_EQ(service_->FindById(id)->generation, generation);
  EXPECT_EQ(service_->Replace(id, Attr::kAttach, kVm2, ".attach.z").code(), Code::kBusy);
}

TEST_F(ServiceTest, ReplaceRefusesInvalidIncompleteAndOversizedValuesAsInvalid) {
  Open();
  const int64_t id = Driven(0)->id;
  const Service::Snapshot before = service_->FindById(id);
  for (const std::string& bad : {std::string("{\"num\": 1"), std::string(""), std::string("{\"num\": 0}"),
                                 "{\"blob\": \"" + std::string(kMaxDocumentBytes, 'x') + "\"}"}) {
    Status s = service_->Replace(id, Attr::kSpec, bad, "sedAb12");
    EXPECT_EQ(s.code(), Code::kInvalid) << bad.substr(0, 20);
    EXPECT_NE(service_->FindById(id)->last_error.find("renamed from sedAb12"), std::string::npos);
  }
  EXPECT_EQ(service_->Replace(id, Attr::kStatus, "available\n", "x").code(), Code::kAccessDenied);
  EXPECT_EQ(service_->FindById(id)->generation, before->generation);
  EXPECT_EQ(Render(service_->FindById(id), Attr::kSpec), Render(before, Attr::kSpec));
}

TEST_F(ServiceTest, TruncateCompletesADocumentBeingWrittenAndAloneChangesNothing) {
  Open();
  const int64_t id = Driven(0)->id;
  ASSERT_TRUE(service_->Truncate(id, Attr::kSpec, 1).ok());
  EXPECT_EQ(Render(service_->FindById(id), Attr::kSpec), "{}\n");
  ASSERT_TRUE(service_->Write(id, Attr::kSpec, 0, "{\"num\": 3}xx").code() == Code::kInvalid);
  ASSERT_TRUE(service_->Write(id, Attr::kSpec, 0, "{\"num\": 3").ok());
  ASSERT_TRUE(service_->Truncate(id, Attr::kSpec, 9).ok());
  ASSERT_TRUE(service_->Write(id, Attr::kSpec, 9, "}\n").ok());
  EXPECT_EQ(Render(service_->FindById(id), Attr::kSpec), "{\"num\": 3}\n");
  EXPECT_TRUE(service_->Truncate(id, Attr::kName, 0).ok());
  EXPECT_EQ(Render(service_->FindById(id), Attr::kName), Driven(0)->name + "\n");
}

}  // namespace
}  // namespace cyborgfs
