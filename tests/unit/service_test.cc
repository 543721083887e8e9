#include "cyborgfs/service.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <set>
#include <sstream>
#include <thread>

#include "cyborgfs/drivers.h"
#include "cyborgfs/lifecycle.h"
#include "test_db.h"

namespace cyborgfs {
namespace {

const char* kU1 = "8e45a2ea-5364-4b0d-a252-bf8becaa606e";
const char* kVm1 = "vm 11111111-2222-4333-8444-555555555555\n";
const char* kVm2 = "vm 66666666-7777-4888-9999-aaaaaaaaaaaa\n";

// A driver whose host steps fail on demand, to check rollback and the error
// state, and whose devices can be hidden (unplugged). It wraps the real fake
// driver, whose bindings play the host (`host()` changes them behind the
// service's back). It counts the host steps it is asked for.
class FlakyDriver : public Driver {
 public:
  explicit FlakyDriver(int devices = 2) : real_(MakeFakeDriver("testhost", devices)) {}
  std::string Name() const override { return "fake"; }
  Result<std::vector<DiscoveredDevice>> Discover() override {
    ++discovers;
    auto all = real_->Discover();
    std::vector<DiscoveredDevice> shown;
    for (auto& d : *all) {
      if (!hidden.count(d.address)) shown.push_back(std::move(d));
    }
    return shown;
  }
  Result<DiscoveredDevice> Describe(const std::string& address) override { return real_->Describe(address); }
  bool Agrees(const DiscoveredDevice& observed, const AttachTarget* target, const std::string& memory) override {
    return real_->Agrees(observed, target, memory);
  }
  Result<std::string> Attach(const std::string& address, const AttachTarget& target, std::string& memory) override {
    ++steps;
    if (fail_attach) return Status::IoError("bind to vfio-pci failed");
    return real_->Attach(address, target, memory);
  }
  Status Detach(const std::string& address, std::string& memory) override {
    ++steps;
    if (fail_detach) return Status::IoError("unbind failed");
    return real_->Detach(address, memory);
  }
  Driver& host() { return *real_; }
  std::atomic<bool> fail_attach{false};
  std::atomic<bool> fail_detach{false};
  std::atomic<int> steps{0};
  std::atomic<int> discovers{0};
  std::set<std::string> hidden;  // addresses Discover does not report

 private:
  std::unique_ptr<Driver> real_;
};

// The audit lines written while it lives.
class AuditCapture {
 public:
  AuditCapture() {
    spdlog::drop("audit");
    auto logger = std::make_shared<spdlog::logger>("audit", std::make_shared<spdlog::sinks::ostream_sink_mt>(lines_));
    logger->set_pattern("%v");
    spdlog::register_logger(logger);
  }
  ~AuditCapture() { spdlog::drop("audit"); }
  std::string text() const { return lines_.str(); }

 private:
  std::ostringstream lines_;
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
  FlakyDriver* OpenFlaky(int devices = 2, std::set<std::string> hidden = {}) {
    service_.reset();
    store_.reset();  // one Store per database at a time: it locks the file
    store_ = std::move(*Store::Open(db_.File("db")));
    auto flaky = std::make_unique<FlakyDriver>(devices);
    flaky->hidden = std::move(hidden);
    FlakyDriver* raw = flaky.get();
    std::vector<std::unique_ptr<Driver>> drivers;
    drivers.push_back(std::move(flaky));
    service_ = std::make_unique<Service>(*store_, std::move(drivers), "testhost");
    EXPECT_TRUE(service_->Start().ok());
    return raw;
  }
  Service::Snapshot Driven(size_t index) { return service_->List().at(index); }
  std::string Render(const Service::Snapshot& a, Attr attr) { return AttributeInfo(attr).render(*a); }
  // The verbs, as a front end calls them: attach from "vm <uuid>" (an empty
  // line detaches), a spec from its text, a name from its text.
  Result<Service::Change> Attach(int64_t id, const std::string& line) {
    auto target = ParseAttach(line);
    if (!target.ok()) return target.status();
    if (!*target) return service_->Detach(id, request_);
    return service_->Attach(id, **target, std::nullopt, request_);
  }
  Result<Service::Change> SetSpec(int64_t id, const std::string& text, std::optional<int64_t> expected = std::nullopt) {
    return service_->SetSpec(id, Json::parse(text), text, expected, request_);
  }
  Result<Service::Change> Rename(int64_t id, const std::string& text) {
    return service_->Rename(id, std::string(StripNewline(text)), text, request_);
  }
  Result<Service::Change> Create(const std::string& name, std::optional<std::string> uuid = std::nullopt) {
    return service_->Create(CreateRequest{name, uuid}, request_);
  }

  Service::Request request_{Caller::Process(0, 0, 1), nullptr, ""};

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
  EXPECT_EQ(Attach(last, kVm1).status().code(), Code::kNoDevice);
  EXPECT_TRUE(service_->Remove(last, request_).ok());
  EXPECT_EQ(service_->List().size(), 3u);
}

TEST_F(ServiceTest, CreateChecksTheNameAndUniqueness) {
  Open(0);
  auto made = Create("IPSec Card", std::string(kU1));
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_FALSE(made->before);
  EXPECT_EQ(made->after->uuid, kU1);
  EXPECT_EQ(made->files.size(), Attributes().size());
  EXPECT_EQ(Create("other", std::string(kU1)).status().code(), Code::kExists);
  EXPECT_EQ(Create("IPSec Card").status().code(), Code::kExists);
  EXPECT_EQ(Create("a/b").status().code(), Code::kInvalid);
  auto random = Create("no uuid given");
  ASSERT_TRUE(random.ok());
  EXPECT_TRUE(IsCanonicalUuid(random->after->uuid));
  auto a = service_->FindByUuid(kU1);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->name, "IPSec Card");
  EXPECT_EQ(Render(a, Attr::kSpec), "{}\n");
  EXPECT_EQ(a->state, State::kAvailable);
}

TEST_F(ServiceTest, SpecWritesApplyDeriveAndRejectWithoutChange) {
  Open(0);
  ASSERT_TRUE(Create(kU1, std::string(kU1)).ok());
  const int64_t id = service_->FindByUuid(kU1)->id;
  ASSERT_TRUE(SetSpec(id, R"({"device_type": "CRYPTO", "remote": 1, "acc_capability": {"num": 2}})").ok());
  auto a = service_->FindById(id);
  EXPECT_EQ(a->device_type, "CRYPTO");
  EXPECT_TRUE(a->remotable);
  EXPECT_EQ(a->acc_capability, R"({"num":2})");
  const int64_t generation = a->generation;
  Status bad = SetSpec(id, R"({"num": 0})").status();
  EXPECT_EQ(bad.code(), Code::kInvalid);
  a = service_->FindById(id);
  EXPECT_EQ(a->generation, generation);
  EXPECT_EQ(a->device_type, "CRYPTO");
  EXPECT_EQ(a->last_error, bad.message());
  EXPECT_EQ(bad.message().rfind("spec: ", 0), 0u);
}

TEST_F(ServiceTest, RewritingTheSameBytesStoresNothing) {
  Open(0);
  ASSERT_TRUE(Create(kU1, std::string(kU1)).ok());
  const int64_t id = service_->FindByUuid(kU1)->id;
  ASSERT_TRUE(Rename(id, "card\n").ok());
  const int64_t generation = service_->FindById(id)->generation;
  ASSERT_TRUE(Rename(id, "card\n").ok());
  EXPECT_EQ(service_->FindById(id)->generation, generation);
  ASSERT_TRUE(Rename(id, "card").ok());  // same meaning, other bytes
  EXPECT_EQ(Render(service_->FindById(id), Attr::kName), "card");
}

TEST_F(ServiceTest, AttachDetachThroughTheDriver) {
  Open();
  const int64_t id = Driven(0)->id;
  ASSERT_TRUE(Attach(id, kVm1).ok());
  auto a = service_->FindById(id);
  EXPECT_EQ(a->state, State::kAttached);
  EXPECT_NE(a->attach_handle.find("TEST_PCI"), std::string::npos);
  EXPECT_TRUE(Attach(id, kVm1).ok());
  EXPECT_EQ(Attach(id, kVm2).status().code(), Code::kBusy);
  EXPECT_EQ(service_->Remove(id, request_).status().code(), Code::kBusy);
  ASSERT_TRUE(Attach(id, "\n").ok());
  a = service_->FindById(id);
  EXPECT_EQ(a->state, State::kAvailable);
  EXPECT_EQ(Render(a, Attr::kAttach), "");
  EXPECT_EQ(Render(a, Attr::kAttachHandle), "");
  EXPECT_TRUE(Attach(id, "").ok());
}

TEST_F(ServiceTest, AFailedDriverAttachChangesNothing) {
  FlakyDriver* driver = OpenFlaky();
  const int64_t id = Driven(0)->id;
  driver->fail_attach = true;
  Status s = Attach(id, kVm1).status();
  EXPECT_EQ(s.code(), Code::kIoError);
  EXPECT_NE(s.message().find("vfio-pci"), std::string::npos);
  EXPECT_EQ(service_->FindById(id)->state, State::kAvailable);
  EXPECT_EQ(store_->LoadAll()->front().state, State::kAvailable);
}

TEST_F(ServiceTest, AFailedDriverDetachIsTheErrorStateAndCanBeRetried) {
  FlakyDriver* driver = OpenFlaky();
  const int64_t id = Driven(0)->id;
  ASSERT_TRUE(Attach(id, kVm1).ok());
  driver->fail_detach = true;
  EXPECT_EQ(Attach(id, "\n").status().code(), Code::kIoError);
  EXPECT_EQ(service_->FindById(id)->state, State::kError);
  EXPECT_EQ(service_->FindById(id)->attachment, "vm 11111111-2222-4333-8444-555555555555");
  driver->fail_detach = false;
  ASSERT_TRUE(Attach(id, "\n").ok());
  EXPECT_EQ(service_->FindById(id)->state, State::kAvailable);
}

TEST_F(ServiceTest, AnAcceleratorARequestHoldsIsDetachedByThatRequestOnly) {
  Open();
  const int64_t id = Driven(0)->id;
  const std::string arq = "aaaaaaaa-2222-4333-8444-555555555555";
  const Service::Request binder{Caller::FleetRequest(arq), nullptr, "accelerator request " + arq};
  AttachTarget vm{AttachTarget::Kind::kVm, "11111111-2222-4333-8444-555555555555"};
  AuditCapture audit;
  ASSERT_TRUE(service_->Attach(id, vm, std::nullopt, binder).ok());
  EXPECT_EQ(service_->FindById(id)->held_by, arq);
  EXPECT_NE(audit.text().find("accelerator_request=" + arq), std::string::npos) << audit.text();
  // A local detach (file or HTTP) is refused, saying what to do; so is another request's attach.
  auto refused = Attach(id, "\n");
  EXPECT_EQ(refused.status().code(), Code::kBusy);
  EXPECT_NE(refused.status().message().find("held by accelerator request " + arq + "; delete the request"),
            std::string::npos)
      << refused.status().message();
  const Service::Request other{Caller::FleetRequest(RandomUuid()), nullptr, ""};
  EXPECT_EQ(service_->Attach(id, vm, std::nullopt, other).status().code(), Code::kBusy);
  EXPECT_TRUE(Attach(id, kVm1).ok());  // the same target locally: a no-op, still held
  EXPECT_EQ(service_->FindById(id)->held_by, arq);
  // Kept across a restart; the request's own detach ends it.
  Open();
  EXPECT_EQ(service_->FindById(id)->held_by, arq);
  ASSERT_TRUE(service_->Detach(id, binder).ok());
  EXPECT_EQ(service_->FindById(id)->held_by, "");
  EXPECT_EQ(service_->FindById(id)->state, State::kAvailable);
  EXPECT_TRUE(CheckInvariants(*service_->FindById(id)).ok());
}

TEST_F(ServiceTest, InMaintenanceAnAcceleratorKeepsItsAttachmentButTakesNoNewOne) {
  Open();
  const int64_t attached = Driven(0)->id, free = Driven(1)->id;
  ASSERT_TRUE(Attach(attached, kVm1).ok());
  AuditCapture audit;
  for (int64_t id : {attached, free}) {
    auto on = service_->SetMaintenance(id, true, request_);
    ASSERT_TRUE(on.ok()) << on.status().message();
    EXPECT_EQ(Render(on->after, Attr::kMaintenance), "1\n");
  }
  EXPECT_NE(audit.text().find("file=\"maintenance\" old=\"0\\n\" new=\"1\\n\""), std::string::npos) << audit.text();
  const int64_t generation = service_->FindById(free)->generation;
  EXPECT_FALSE(service_->SetMaintenance(free, true, request_)->changed()) << "setting what it has is a no-op";
  EXPECT_EQ(service_->FindById(free)->generation, generation);
  auto refused = Attach(free, kVm1);
  EXPECT_EQ(refused.status().code(), Code::kBusy);
  EXPECT_NE(refused.status().message().find("in maintenance"), std::string::npos) << refused.status().message();
  EXPECT_EQ(service_->FindById(attached)->attachment, StripNewline(kVm1)) << "its attachment stays";
  EXPECT_TRUE(Attach(attached, kVm1).ok()) << "the attachment it has is no new one";
  EXPECT_TRUE(Attach(attached, "\n").ok()) << "a detach is allowed";
  EXPECT_EQ(Attach(attached, kVm1).status().code(), Code::kBusy);
  Open();  // kept across a restart
  EXPECT_TRUE(service_->FindById(free)->maintenance);
  ASSERT_TRUE(service_->SetMaintenance(free, false, request_).ok());
  EXPECT_TRUE(Attach(free, kVm1).ok());
}

TEST_F(ServiceTest, RacingAttachesLetExactlyOneWin) {
  Open(0);
  for (int round = 0; round < 50; ++round) {
    const std::string uuid = RandomUuid();
    ASSERT_TRUE(Create(uuid, uuid).ok());
    const int64_t id = service_->FindByUuid(uuid)->id;
    std::atomic<int> wins{0}, busy{0};
    auto attach = [&](const char* target) {
      Status s = Attach(id, target).status();
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

TEST_F(ServiceTest, SetSpecWithAnExpectedGenerationRefusesAnotherOne) {
  Open(0);
  ASSERT_TRUE(Create(kU1, std::string(kU1)).ok());
  const int64_t id = service_->FindByUuid(kU1)->id;
  const int64_t generation = service_->FindById(id)->generation;
  ASSERT_TRUE(SetSpec(id, R"({"num": 1})", generation).ok());
  Status stale = SetSpec(id, R"({"num": 2})", generation).status();  // another change came first
  EXPECT_EQ(stale.code(), Code::kBusy);
  EXPECT_NE(stale.message().find("changed the accelerator meanwhile"), std::string::npos);
  EXPECT_EQ(Render(service_->FindById(id), Attr::kSpec), R"({"num": 1})");
}

TEST_F(ServiceTest, AChangeSaysWhichFilesChanged) {
  Open();
  auto attached = Attach(Driven(0)->id, kVm1);
  ASSERT_TRUE(attached.ok());
  std::set<Attr> files(attached->files.begin(), attached->files.end());
  EXPECT_TRUE(files.count(Attr::kAttach) && files.count(Attr::kStatus) && files.count(Attr::kAttachHandle) &&
              files.count(Attr::kDriver));
  EXPECT_FALSE(files.count(Attr::kSpec) || files.count(Attr::kName));
  auto again = Attach(Driven(0)->id, kVm1);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->changed());
  EXPECT_TRUE(again->files.empty());
}

TEST_F(ServiceTest, AListenerIsToldOfOthersChangesNotOfItsOwn) {
  Open();
  int mine = 0, theirs = 0;
  const int fs_origin = 0, api_origin = 0;  // two front ends, told apart by address
  service_->AddListener(&fs_origin, [&](const Service::Snapshot&, const Service::Snapshot&) { ++mine; });
  service_->AddListener(&api_origin, [&](const Service::Snapshot&, const Service::Snapshot&) { ++theirs; });
  const int64_t id = Driven(0)->id;
  ASSERT_TRUE(service_->Attach(id, *ParseAttach(kVm1).value(), std::nullopt, {Caller::Daemon(), &fs_origin, ""}).ok());
  EXPECT_EQ(mine, 0);  // the change came back to it from the verb
  EXPECT_EQ(theirs, 1);
  ASSERT_TRUE(service_->Detach(id, {Caller::Daemon(), &api_origin, ""}).ok());
  EXPECT_EQ(mine, 1);
  EXPECT_EQ(theirs, 1);
}

TEST_F(ServiceTest, ReportedAcceleratorsAreNotRemovable) {
  Open();
  Status s = service_->Remove(Driven(0)->id, request_).status();
  EXPECT_EQ(s.code(), Code::kBusy);
  EXPECT_NE(service_->FindById(Driven(0)->id)->last_error.find("still reported"), std::string::npos);
}

TEST_F(ServiceTest, CommittedChangesSurviveANewProcess) {
  Open();
  const int64_t id = Driven(1)->id;
  ASSERT_TRUE(SetSpec(id, "{\"num\": 4}").ok());
  ASSERT_TRUE(Attach(id, "host testhost").ok());
  Open();
  auto a = service_->FindById(id);
  EXPECT_EQ(Render(a, Attr::kSpec), "{\"num\": 4}");
  EXPECT_EQ(a->state, State::kAttached);
  EXPECT_EQ(Render(a, Attr::kAttach), "host testhost\n");  // given to the verb without bytes: canonical
}

// --- the lifecycle through the service (issue: a rescan never undoes a detach) ---

TEST_F(ServiceTest, AFailedDetachIsRetriedByARescanNeverUndone) {
  FlakyDriver* driver = OpenFlaky();
  const Service::Snapshot gpu = Driven(0);
  const int64_t id = gpu->id;
  ASSERT_TRUE(Attach(id, kVm1).ok());
  driver->fail_detach = true;
  EXPECT_EQ(Attach(id, "\n").status().code(), Code::kIoError);
  ASSERT_TRUE(service_->Rescan({}).ok());  // the driver still fails: still error, still detaching
  auto a = service_->FindById(id);
  EXPECT_EQ(a->state, State::kError);
  EXPECT_TRUE(a->detaching);
  EXPECT_FALSE(driver->host().Agrees(*driver->host().Describe(gpu->driver_address), nullptr, "{}"));
  driver->fail_detach = false;
  ASSERT_TRUE(service_->Rescan({}).ok());  // the rescan retries the detach the user asked for
  a = service_->FindById(id);
  EXPECT_EQ(a->state, State::kAvailable);
  EXPECT_EQ(a->attachment, "");
  EXPECT_FALSE(a->detaching);
  EXPECT_EQ(a->last_error, "");
  EXPECT_TRUE(driver->host().Agrees(*driver->host().Describe(gpu->driver_address), nullptr, "{}"));
  EXPECT_EQ(store_->LoadAll()->front().state, State::kAvailable);
}

TEST_F(ServiceTest, AFailedDetachIsRecordedAndSurvivesARestart) {
  FlakyDriver* driver = OpenFlaky();
  const int64_t id = Driven(0)->id;
  ASSERT_TRUE(Attach(id, kVm1).ok());
  driver->fail_detach = true;
  EXPECT_EQ(Attach(id, "\n").status().code(), Code::kIoError);
  const Accelerator stored = store_->LoadAll()->front();
  EXPECT_EQ(stored.state, State::kError);
  EXPECT_TRUE(stored.detaching);
  OpenFlaky();  // a new host: the device is not held; the start finishes the detach
  EXPECT_EQ(service_->FindById(id)->state, State::kAvailable);
}

TEST_F(ServiceTest, WritingTheAttachmentAgainInTheErrorStateAttachesIt) {
  FlakyDriver* driver = OpenFlaky();
  const int64_t id = Driven(0)->id;
  ASSERT_TRUE(Attach(id, kVm1).ok());
  driver->fail_detach = true;
  EXPECT_EQ(Attach(id, "\n").status().code(), Code::kIoError);
  ASSERT_TRUE(Attach(id, kVm1).ok());  // the user changed their mind
  auto a = service_->FindById(id);
  EXPECT_EQ(a->state, State::kAttached);
  EXPECT_FALSE(a->detaching);
  ASSERT_TRUE(service_->Rescan({}).ok());
  EXPECT_EQ(service_->FindById(id)->state, State::kAttached);
  EXPECT_EQ(Attach(id, kVm2).status().code(), Code::kBusy);
}

TEST_F(ServiceTest, AFailedRestoreIsTheErrorStateAndALaterRescanRestoresIt) {
  FlakyDriver* driver = OpenFlaky();
  const int64_t id = Driven(0)->id;
  ASSERT_TRUE(Attach(id, kVm1).ok());
  std::string memory = "{}";
  ASSERT_TRUE(driver->host().Detach(Driven(0)->driver_address, memory).ok());  // a reboot forgot the binding
  driver->fail_attach = true;
  ASSERT_TRUE(service_->Rescan({}).ok());
  auto a = service_->FindById(id);
  EXPECT_EQ(a->state, State::kError);
  EXPECT_FALSE(a->detaching);
  EXPECT_EQ(a->attachment, "vm 11111111-2222-4333-8444-555555555555");
  driver->fail_attach = false;
  ASSERT_TRUE(service_->Rescan({}).ok());
  EXPECT_EQ(service_->FindById(id)->state, State::kAttached);
}

TEST_F(ServiceTest, AnOfflineDetachingRecordFinishesItsDetachWhenItComesBack) {
  FlakyDriver* driver = OpenFlaky();
  const Service::Snapshot gpu = Driven(0);
  ASSERT_TRUE(Attach(gpu->id, kVm1).ok());
  driver->fail_detach = true;
  EXPECT_EQ(Attach(gpu->id, "\n").status().code(), Code::kIoError);
  driver->hidden.insert(gpu->driver_address);
  ASSERT_TRUE(service_->Rescan({}).ok());
  EXPECT_EQ(service_->FindById(gpu->id)->state, State::kOffline);
  EXPECT_TRUE(service_->FindById(gpu->id)->detaching);
  driver->hidden.clear();
  driver->fail_detach = false;
  ASSERT_TRUE(service_->Rescan({}).ok());
  EXPECT_EQ(service_->FindById(gpu->id)->state, State::kAvailable);
}

// --- rescans: observe, plan, apply ---------------------------------------------

TEST_F(ServiceTest, ARescanWithNothingToChangeCallsNoDriverStepAndCommitsNothing) {
  FlakyDriver* driver = OpenFlaky(64);
  ASSERT_TRUE(Attach(Driven(0)->id, kVm1).ok());
  const int steps = driver->steps;
  const uint64_t commits = store_->Commits();
  EXPECT_TRUE(service_->PlanRescan().empty());
  ASSERT_TRUE(service_->Rescan({}).ok());
  EXPECT_EQ(driver->steps, steps);
  EXPECT_EQ(store_->Commits(), commits);
}

TEST_F(ServiceTest, AStartAdoptsEveryNewDeviceInOneCommit) {
  store_ = std::move(*Store::Open(db_.File("db")));
  const uint64_t before = store_->Commits();
  std::vector<std::unique_ptr<Driver>> drivers;
  drivers.push_back(MakeFakeDriver("testhost", 500));
  service_ = std::make_unique<Service>(*store_, std::move(drivers), "testhost");
  ASSERT_TRUE(service_->Start().ok());
  EXPECT_EQ(service_->List().size(), 500u);
  EXPECT_EQ(store_->Commits(), before + 1);
  EXPECT_EQ(store_->Count(), 500u);
}

TEST_F(ServiceTest, ThePlanSaysWhatEachDifferenceNeeds) {
  using Step = Service::RescanPlan::Step;
  FlakyDriver* driver = OpenFlaky(4, {"0000:f0:00.3"});
  ASSERT_EQ(service_->List().size(), 3u);
  const Service::Snapshot restored = Driven(0), repaired = Driven(1), gone = Driven(2);
  ASSERT_TRUE(Attach(restored->id, kVm1).ok());
  std::string memory = "{}";
  ASSERT_TRUE(driver->host().Detach(restored->driver_address, memory).ok());  // the host let go of it
  AttachTarget vm{AttachTarget::Kind::kVm, "66666666-7777-4888-9999-aaaaaaaaaaaa"};
  ASSERT_TRUE(driver->host().Attach(repaired->driver_address, vm, memory).ok());  // held, the record detached
  driver->hidden = {gone->driver_address};  // unplugged; and the fourth device plugged in
  const Service::RescanPlan plan = service_->PlanRescan();
  ASSERT_EQ(plan.adopt.size(), 1u);
  EXPECT_EQ(plan.adopt[0].device.address, "0000:f0:00.3");
  EXPECT_EQ(plan.adopt[0].name, "gpu-0000:f0:00.3");
  ASSERT_EQ(plan.offline.size(), 1u);
  EXPECT_EQ(plan.offline[0]->id, gone->id);
  std::map<int64_t, Step> steps;
  for (const auto& u : plan.update) steps[u.current->id] = u.step;
  EXPECT_EQ(steps, (std::map<int64_t, Step>{{restored->id, Step::kRestore}, {repaired->id, Step::kRepair}}));
  EXPECT_EQ(plan.reported, 3u);
  EXPECT_EQ(plan.records, 3u);
  const uint64_t commits = store_->Commits();
  ASSERT_TRUE(service_->Rescan({}).ok());
  EXPECT_EQ(store_->Commits(), commits + 1);  // the whole plan, one transaction
  EXPECT_TRUE(service_->PlanRescan().empty());
  EXPECT_EQ(service_->FindById(restored->id)->state, State::kAttached);
  EXPECT_EQ(service_->FindById(gone->id)->state, State::kOffline);
  EXPECT_EQ(service_->List().size(), 4u);
  EXPECT_TRUE(driver->host().Agrees(*driver->host().Describe(repaired->driver_address), nullptr, "{}"));
}

TEST_F(ServiceTest, EveryTransitionTheDaemonMakesIsAudited) {
  AuditCapture audit;
  FlakyDriver* driver = OpenFlaky();
  const Service::Snapshot gpu = Driven(0);
  driver->hidden = {gpu->driver_address};
  ASSERT_TRUE(service_->Rescan({}).ok());
  driver->hidden.clear();
  ASSERT_TRUE(service_->Rescan({}).ok());
  std::string memory = "{}";
  AttachTarget vm{AttachTarget::Kind::kVm, "66666666-7777-4888-9999-aaaaaaaaaaaa"};
  ASSERT_TRUE(driver->host().Attach(gpu->driver_address, vm, memory).ok());
  ASSERT_TRUE(service_->Rescan({}).ok());  // repaired: given back to nvidia
  const std::string who = "uid=- pid=- command=\"cyborgfs\" accelerator=\"" + gpu->uuid + "\"";
  const std::string text = audit.text();
  EXPECT_NE(text.find(who + " file=\"status\" old=\"available\\n\" new=\"offline\\n\""), std::string::npos) << text;
  EXPECT_NE(text.find(who + " file=\"status\" old=\"offline\\n\" new=\"available\\n\""), std::string::npos) << text;
  EXPECT_NE(text.find(who + " file=\"driver\" old=\"vfio-pci\\n\" new=\"nvidia\\n\""), std::string::npos) << text;
}

TEST_F(ServiceTest, PeriodicRescansStartAgainAfterAStop) {
  // SIGHUP with a new --rescan-interval stops the rescanner and starts it again.
  FlakyDriver* driver = OpenFlaky();
  service_->StartRescans(std::chrono::milliseconds(20));
  service_->StopRescans();
  const int before = driver->discovers;
  service_->StartRescans(std::chrono::milliseconds(20));
  for (int i = 0; i < 250 && driver->discovers == before; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  service_->StopRescans();
  EXPECT_GT(driver->discovers, before);
}

TEST_F(ServiceTest, ARefusalRacingAChangePublishesNothingOlder) {
  AuditCapture audit;  // quiet and fast
  Open();
  const int64_t id = Driven(0)->id;
  std::atomic<bool> stop{false};
  std::vector<std::thread> refusers;
  for (int t = 0; t < 3; ++t) {
    refusers.emplace_back([&] {
      const Service::Request refusal{Caller::Process(0, 0, 2), nullptr, "status (renamed from tmp)"};
      while (!stop) (void)service_->Refuse(id, Status::AccessDenied("the file is read-only"), refusal);
    });
  }
  for (int i = 0; i < 1000; ++i) {
    const std::string value = "{\"num\": " + std::to_string(i + 1) + "}";
    Status s = SetSpec(id, value).status();
    ASSERT_TRUE(s.ok()) << i << ": " << s.message();
    ASSERT_EQ(Render(service_->FindById(id), Attr::kSpec), value) << i;
  }
  stop = true;
  for (auto& t : refusers) t.join();
  EXPECT_EQ(service_->FindById(id)->generation, store_->LoadAll()->front().generation);
}

}  // namespace
}  // namespace cyborgfs
