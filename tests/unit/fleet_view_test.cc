// The fleet's view without PostgreSQL or FUSE: records read back as
// accelerators (records.h), the view's indexes and the board's read-your-
// writes wait (fleet_view.h), and the tree MOUNT/fleet/ makes of a view
// (fleet_tree.h), requests too.
#include "cyborgfs/fleet_view.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "cyborgfs/attributes.h"
#include "cyborgfs/records.h"
#include "fleet_tree.h"

namespace cyborgfs {
namespace {

Accelerator Full() {
  Accelerator a;
  a.uuid = "11111111-2222-4333-8444-555555555555";
  a.name = "gpu-0";
  a.spec = R"({"num":1,"nested":{"x":[1,2]}})";
  a.device_type = "GPU";
  a.acc_type = "A100";
  a.vendor_id = "10de";
  a.product_id = "20b0";
  a.remotable = true;
  a.state = State::kAttached;
  a.attachment = "vm 8e45a2ea-5364-4b0d-a252-bf8becaa606e";
  a.attach_handle = R"({"pci_address":"0000:3b:00.0"})";
  a.driver = "pci";
  a.facts.kernel_driver = "vfio-pci";
  a.facts.model = "NVIDIA Corporation GA100 \"A100\"";
  a.facts.numa_node = 1;
  a.facts.iommu_group = "12";
  a.facts.virtfns = {"0000:3b:00.4", "0000:3b:00.5"};
  a.facts.sriov_totalvfs = 8;
  a.facts.sriov_numvfs = 2;
  a.facts.subsystem_id = "10de:145f";
  a.facts.mdev_types["nvidia-1"] = {"GRID A100-1B", 3};
  a.facts.health = "degraded";
  a.facts.health_reasons = {"pcie link at 8 GT/s x8, capable of 16 GT/s x16", "pcie aer: 2 correctable errors"};
  a.facts.aer_correctable = 7;
  a.facts.aer_nonfatal = 0;
  a.last_error = "attach: busy";
  a.generation = 7;
  a.created_at = 1700000000;
  a.updated_at = 1700000100;
  return a;
}

TEST(FleetRecordTest, ARecordReadBackShowsTheSameFiles) {
  for (Accelerator a : {Full(), [] {
                          Accelerator bare;  // unknown counts, no facts, detached
                          bare.uuid = "11111111-2222-4333-8444-666666666666";
                          bare.name = "bare";
                          return bare;
                        }()}) {
    auto back = AcceleratorFromRecord(Json::parse(RecordText(a)));
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(RecordText(*back), RecordText(a));
    for (const AttrInfo& info : Attributes()) EXPECT_EQ(info.render(*back), info.render(a)) << info.name;
  }
}

TEST(FleetRecordTest, WhatIsNotARecordIsRefusedNamingTheKey) {
  auto record = [](const char* key, Json value) {
    Json r = Json::parse(RecordText(Full()));
    r[key] = std::move(value);
    return AcceleratorFromRecord(r);
  };
  EXPECT_EQ(record("status", "sleeping").status().code(), Code::kInvalid);
  EXPECT_NE(record("name", 5).status().message().find("\"name\""), std::string::npos);
  EXPECT_NE(record("numa_node", "one").status().message().find("\"numa_node\""), std::string::npos);
  EXPECT_NE(record("uuid", "NOT-A-UUID").status().message().find("uuid"), std::string::npos);
  EXPECT_FALSE(record("virtfns", Json::array({1})).ok());
  EXPECT_FALSE(record("mdev_types", Json{{"t", 1}}).ok());
  EXPECT_FALSE(AcceleratorFromRecord(Json::array()).ok());
}

TEST(FleetRecordTest, AFleetRecordNamesItsHostAfterItsUuid) {
  const std::string text = FleetRecordText(Full(), "compute-1", false);
  EXPECT_EQ(text.rfind("{\"uuid\":\"11111111-2222-4333-8444-555555555555\",\"host\":\"compute-1\","
                       "\"host_status\":\"down\",\"acc_specs\":",
                       0),
            0u)
      << text;
  Json parsed = Json::parse(text);
  parsed.erase("host");
  parsed.erase("host_status");
  EXPECT_EQ(parsed, Json::parse(RecordText(Full())));
}

// Two hosts: "a" (up) with accelerators 1 and 3, "b" (down) with 2.
FleetView TwoHosts() {
  FleetView view;
  for (auto [number, name, up] : {std::tuple{10, "a", true}, std::tuple{11, "b", false}}) {
    FleetHost h;
    h.number = number;
    h.name = name;
    h.up = up;
    h.lease_expires_at = 1700000030;
    view.hosts.push_back(h);
  }
  for (auto [number, host] : {std::pair{1, "a"}, std::pair{2, "b"}, std::pair{3, "a"}}) {
    auto a = std::make_shared<FleetAccelerator>();
    a->number = number;
    a->host = host;
    a->revision = 100 + number;
    a->record = Full();
    a->record.uuid = "11111111-2222-4333-8444-55555555555" + std::to_string(number);
    a->record.name = "gpu-" + std::to_string(number);
    view.accelerators[number] = a;
    view.hosts[host == std::string("a") ? 0 : 1].accelerators.push_back(a);
  }
  IndexFleetView(view);
  return view;
}

TEST(FleetViewTest, TheIndexesAndTheListFindEveryHostAndAccelerator) {
  const FleetView view = TwoHosts();
  ASSERT_NE(view.Host("b"), nullptr);
  EXPECT_FALSE(view.HostUp("b"));
  EXPECT_TRUE(view.HostUp("a"));
  EXPECT_EQ(view.HostByNumber(11)->name, "b");
  EXPECT_EQ(view.Find("11111111-2222-4333-8444-555555555552")->host, "b");
  EXPECT_EQ(view.Find("11111111-2222-4333-8444-555555555559"), nullptr);
  const Json list = Json::parse(*view.ListBody());
  ASSERT_EQ(list["accelerator"].size(), 3u);
  EXPECT_EQ(list["accelerator"][1]["host"], "b");
  EXPECT_EQ(list["accelerator"][1]["host_status"], "down");
}

namespace tree = fs::fleet_tree;

TEST(FleetTreeTest, NamesLeadToTheirNodesAndNowhereElse) {
  const FleetView view = TwoHosts();
  const fs::Node hosts{fs::NodeKind::kFleetHosts};
  const fuse_ino_t b = tree::Lookup(view, hosts, "b");
  EXPECT_EQ(b, fs::FleetHostIno(11));
  EXPECT_EQ(tree::Lookup(view, hosts, "c"), 0u);
  const fs::Node b_node = fs::Decode(b);
  ASSERT_EQ(b_node.kind, fs::NodeKind::kFleetHost);
  const fuse_ino_t status = tree::Lookup(view, b_node, "status");
  auto described = tree::Describe(view, fs::Decode(status), 0);
  ASSERT_TRUE(described.ok());
  EXPECT_EQ(described->text(), "down\n");
  EXPECT_EQ(described->mode, S_IFREG | 0444);
  const fs::Node b_accelerators = fs::Decode(tree::Lookup(view, b_node, "accelerators"));
  EXPECT_EQ(tree::Lookup(view, b_accelerators, "11111111-2222-4333-8444-555555555552"), fs::FleetDirIno(2));
  EXPECT_EQ(tree::Lookup(view, b_accelerators, "11111111-2222-4333-8444-555555555551"), 0u) << "a's, not b's";
  const fs::Node folder = fs::Decode(fs::FleetDirIno(2));
  const fuse_ino_t name = tree::Lookup(view, folder, "name");
  EXPECT_EQ(tree::Describe(view, fs::Decode(name), 0)->text(), "gpu-2\n");
  EXPECT_EQ(tree::Lookup(view, folder, "new-file"), 0u);
  const fuse_ino_t link =
      tree::Lookup(view, fs::Node{fs::NodeKind::kFleetAccelerators}, "11111111-2222-4333-8444-555555555553");
  auto target = tree::Describe(view, fs::Decode(link), 0);
  EXPECT_EQ(target->mode, S_IFLNK | 0777);
  EXPECT_EQ(target->text(), "../hosts/a/accelerators/11111111-2222-4333-8444-555555555553");
  EXPECT_EQ(tree::Describe(view, fs::Decode(fs::FleetDirIno(9)), 0).status().code(), Code::kNotFound);
}

TEST(FleetTreeTest, ListingsResumeAfterTheirCookies) {
  const FleetView view = TwoHosts();
  fuse_ino_t parent = 0;
  auto all = tree::List(view, fs::Node{fs::NodeKind::kFleetAccelerators}, 2, parent);
  EXPECT_EQ(parent, fs::kFleetIno);
  ASSERT_EQ(all.size(), 3u);
  auto rest = tree::List(view, fs::Node{fs::NodeKind::kFleetAccelerators}, all[0].cookie, parent);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].name, all[1].name);
  auto of_a = tree::List(view, fs::Decode(fs::FleetHostIno(10, 3)), 0, parent);
  EXPECT_EQ(parent, fs::FleetHostIno(10));
  ASSERT_EQ(of_a.size(), 2u);
  EXPECT_EQ(of_a[1].name, "11111111-2222-4333-8444-555555555553");
  EXPECT_EQ(tree::List(view, fs::Decode(fs::FleetDirIno(1)), 0, parent).size(), Attributes().size());
  EXPECT_EQ(tree::List(view, fs::Node{fs::NodeKind::kFleet}, 4, parent).size(), 2u) << "after hosts, accelerators";
}

// Requests 5 (Bound on "a", two accelerators) and 6 (BindFailed).
FleetView WithRequests() {
  FleetView view = TwoHosts();
  auto bound = std::make_shared<FleetRequest>();
  bound->number = 5;
  bound->revision = 200;
  bound->uuid = "aaaaaaaa-2222-4333-8444-555555555555";
  bound->record =
      Json{{"uuid", bound->uuid},
           {"state", "Bound"},
           {"host", "a"},
           {"accelerators", {"11111111-2222-4333-8444-555555555551", "11111111-2222-4333-8444-555555555553"}},
           {"attach_handle", {{"pci_address", "0000:3b:00.0"}}},
           {"error", ""},
           {"created_at", 1700000000},
           {"updated_at", 1700000200}};
  auto failed = std::make_shared<FleetRequest>();
  failed->number = 6;
  failed->revision = 201;
  failed->uuid = "bbbbbbbb-2222-4333-8444-555555555555";
  failed->record =
      Json{{"uuid", failed->uuid},          {"state", "BindFailed"},    {"host", nullptr},
           {"accelerators", Json::array()}, {"attach_handle", nullptr}, {"error", "no accelerator available"},
           {"created_at", 1700000000},      {"updated_at", 1700000300}};
  view.requests[5] = bound;
  view.requests[6] = failed;
  IndexFleetView(view);
  return view;
}

TEST(FleetTreeTest, ARequestsFilesSayItsStateHostAcceleratorsAndHandle) {
  const FleetView view = WithRequests();
  const fs::Node requests = fs::Decode(tree::Lookup(view, fs::Node{fs::NodeKind::kFleet}, "requests"));
  ASSERT_EQ(requests.kind, fs::NodeKind::kFleetRequests);
  EXPECT_EQ(tree::Describe(view, requests, 0)->mode, S_IFDIR | 0775) << "rmdir needs a writable folder";
  EXPECT_EQ(fs::Decode(tree::Lookup(view, requests, "create")).kind, fs::NodeKind::kFleetRequestCreate);
  EXPECT_FALSE(fs::IsFleet(fs::NodeKind::kFleetRequestCreate)) << "written as create is, not from the view";
  const fuse_ino_t bound = tree::Lookup(view, requests, "aaaaaaaa-2222-4333-8444-555555555555");
  ASSERT_EQ(bound, fs::FleetRequestIno(5));
  EXPECT_EQ(tree::Lookup(view, requests, "cccccccc-2222-4333-8444-555555555555"), 0u);
  const auto file = [&](fuse_ino_t folder, const char* name) {
    const fuse_ino_t ino = tree::Lookup(view, fs::Decode(folder), name);
    EXPECT_NE(ino, 0u) << name;
    EXPECT_TRUE(fs::ChangesByItself(fs::Decode(ino).kind)) << name;
    auto item = tree::Describe(view, fs::Decode(ino), 0);
    EXPECT_EQ(item->mode, S_IFREG | 0444) << name;
    return item->text();
  };
  EXPECT_EQ(file(bound, "state"), "Bound\n");
  EXPECT_EQ(file(bound, "host"), "a\n");
  EXPECT_EQ(file(bound, "accelerators"),
            "11111111-2222-4333-8444-555555555551\n11111111-2222-4333-8444-555555555553\n");
  EXPECT_EQ(Json::parse(file(bound, "attach_handle")), Json::parse(R"({"pci_address": "0000:3b:00.0"})"));
  EXPECT_EQ(file(bound, "error"), "");
  EXPECT_EQ(Json::parse(file(bound, "request")), view.FindRequestByNumber(5)->record);
  const fuse_ino_t failed = fs::FleetRequestIno(6);
  EXPECT_EQ(file(failed, "state"), "BindFailed\n");
  EXPECT_EQ(file(failed, "host") + file(failed, "accelerators") + file(failed, "attach_handle"), "");
  EXPECT_EQ(file(failed, "error"), "no accelerator available\n");
  EXPECT_EQ(tree::Lookup(view, fs::Decode(failed), "uuid"), 0u);
  EXPECT_EQ(tree::Describe(view, fs::Decode(fs::FleetRequestIno(7, 1)), 0).status().code(), Code::kNotFound);
  EXPECT_EQ(fs::Decode(fs::FleetRequestIno(5, 7)).kind, fs::NodeKind::kUnknown);
}

TEST(FleetTreeTest, RequestsAreListedAfterCreateInTheirOrder) {
  const FleetView view = WithRequests();
  fuse_ino_t parent = 0;
  auto all = tree::List(view, fs::Node{fs::NodeKind::kFleetRequests}, 2, parent);
  EXPECT_EQ(parent, fs::kFleetIno);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].name, "create");
  EXPECT_EQ(all[1].name, "aaaaaaaa-2222-4333-8444-555555555555");
  auto rest = tree::List(view, fs::Node{fs::NodeKind::kFleetRequests}, all[1].cookie, parent);
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].name, "bbbbbbbb-2222-4333-8444-555555555555");
  auto files = tree::List(view, fs::Decode(fs::FleetRequestIno(6)), 0, parent);
  EXPECT_EQ(parent, fs::kFleetRequestsIno);
  ASSERT_EQ(files.size(), 6u);
  EXPECT_EQ(files[5].name, "request");
  EXPECT_EQ(files[5].ino, fs::FleetRequestIno(6, 6));
}

TEST(FleetBoardTest, AwaitReadWaitsForAReadBegunAfterIt) {
  FleetBoard board;
  EXPECT_FALSE(board.AwaitRead(std::chrono::milliseconds(1000))) << "no reader: at once";
  // A reader that reads whenever woken, and one read already begun.
  std::mutex mu;
  std::condition_variable woken;
  int wakes = 0;
  bool stop = false;
  board.SetReader([&] {
    std::lock_guard lock(mu);
    ++wakes;
    woken.notify_all();
  });
  const uint64_t early = board.BeginRead();
  std::thread reader([&] {
    std::unique_lock lock(mu);
    for (int seen = 0;;) {
      woken.wait(lock, [&] { return wakes > seen || stop; });
      if (stop) return;
      seen = wakes;
      lock.unlock();         // the board calls the waker with its lock held
      board.EndRead(early);  // began before the ask: does not answer it
      board.EndRead(board.BeginRead());
      lock.lock();
    }
  });
  EXPECT_TRUE(board.AwaitRead(std::chrono::milliseconds(10000)));
  EXPECT_TRUE(board.AwaitRead(std::chrono::milliseconds(10000)));
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(wakes, 2);
    stop = true;
    woken.notify_all();
  }
  reader.join();
  // A reader that never reads: the wait ends at its timeout.
  board.SetReader([] {});
  EXPECT_FALSE(board.AwaitRead(std::chrono::milliseconds(20)));
  board.EndRead(board.BeginRead());
  EXPECT_FALSE(board.AwaitRead(std::chrono::milliseconds(20))) << "an older read answers no newer ask";
}

TEST(FleetBoardTest, ListenersAreToldOfEachViewAndTheOneItReplaced) {
  FleetBoard board;
  std::vector<std::pair<size_t, size_t>> told;  // hosts before, after
  board.AddListener([&](const FleetView& before, const FleetView& after) {
    EXPECT_EQ(board.Current().get(), &after) << "told once it is current";
    told.emplace_back(before.hosts.size(), after.hosts.size());
  });
  board.Publish(std::make_shared<const FleetView>(TwoHosts()));
  FleetView one = TwoHosts();
  one.hosts.pop_back();
  IndexFleetView(one);
  board.Publish(std::make_shared<const FleetView>(std::move(one)));
  EXPECT_EQ(told, (std::vector<std::pair<size_t, size_t>>{{0, 2}, {2, 1}}));
}

}  // namespace
}  // namespace cyborgfs
