// The pci driver on the standard tree of tests/sysfs/fake_sysfs.py, in process.
// Nothing answers the control-file writes here (no fake kernel), so an
// attach fails at its first checked step; that is what tests the rollback.
#include "pci_driver.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "cyborgfs/values.h"
#include "test_db.h"

namespace cyborgfs {
namespace {

class PciDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string command =
        "python3 " CYBORGFS_SOURCE_DIR "/tests/sysfs/fake_sysfs.py " + dir_.File("sys") + " 2>&1";
    ASSERT_EQ(std::system(command.c_str()), 0);
  }
  PciDriver Make(int settle_ms = 0) {
    return PciDriver("testhost", Sysfs(dir_.File("sys")), DeviceTable(), std::make_unique<PciNames>(""), settle_ms);
  }
  std::string Slurp(const std::string& path) {
    std::ifstream in(dir_.File("sys/" + path));
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  TempDir dir_;
};

TEST_F(PciDriverTest, DiscoversTheAcceleratorsOnly) {
  PciDriver driver = Make();
  auto found = driver.Discover();
  ASSERT_TRUE(found.ok()) << found.status().message();
  std::map<std::string, DiscoveredDevice> by_address;
  for (const auto& d : *found) by_address[d.address] = d;
  EXPECT_EQ(by_address.size(), 10u);
  EXPECT_FALSE(by_address.count("0000:18:00.0"));  // NIC
  EXPECT_FALSE(by_address.count("0000:19:00.0"));  // NVMe
  EXPECT_FALSE(by_address.count("0000:00:01.0"));  // bridge
  const DiscoveredDevice& qat = by_address.at("0000:5e:00.0");
  EXPECT_EQ(qat.device_type, "CRYPTO");
  EXPECT_EQ(qat.facts.kernel_driver, "c6xx");
  EXPECT_EQ(qat.facts.virtfns, (std::vector<std::string>{"0000:5e:01.0", "0000:5e:01.1"}));
  EXPECT_EQ(by_address.at("0000:5e:01.0").facts.physfn, "0000:5e:00.0");
  EXPECT_EQ(by_address.at("0000:86:00.0").facts.numa_node, 1);
  EXPECT_EQ(by_address.at("0000:d8:00.0").facts.mdev_types.at("nvidia-222").available_instances, 16);
  EXPECT_EQ(by_address.at("0000:17:00.0").uuid, NameBasedUuid("testhost/pci/0000:17:00.0"));
  EXPECT_TRUE(driver.Health().empty());
}

TEST_F(PciDriverTest, AFailedStepUndoesTheStepsBefore) {
  PciDriver driver = Make();
  std::string memory = "{}";
  AttachTarget vm{AttachTarget::Kind::kVm, "11111111-2222-4333-8444-555555555555"};
  auto attached = driver.Attach("0000:17:00.0", vm, memory);
  ASSERT_EQ(attached.status().code(), Code::kIoError);
  EXPECT_EQ(attached.status().message(), "unbind from nvidia failed: the device is still bound to nvidia; rolled back");
  EXPECT_EQ(Slurp("bus/pci/drivers/nvidia/unbind"), "0000:17:00.0\n");
  EXPECT_EQ(Slurp("bus/pci/drivers/nvidia/bind"), "0000:17:00.0\n");  // the undo
  EXPECT_EQ(Slurp("bus/pci/drivers_probe"), "");
  EXPECT_EQ(memory, R"({"native_driver":"nvidia"})");
}

TEST_F(PciDriverTest, RefusesOtherHostsUnknownDevicesAndUnofferedVgpuTypes) {
  PciDriver driver = Make();
  std::string memory = "{}";
  EXPECT_EQ(driver.Attach("0000:17:00.0", {AttachTarget::Kind::kHost, "elsewhere"}, memory).status().code(),
            Code::kInvalid);
  EXPECT_EQ(driver.Attach("0000:99:00.0", {AttachTarget::Kind::kVm, "x"}, memory).status().code(), Code::kNoDevice);
  AttachTarget vgpu{AttachTarget::Kind::kVm, "x", R"({"vgpu_type":"nvidia-999"})"};
  EXPECT_EQ(driver.Attach("0000:d8:00.0", vgpu, memory).status().code(), Code::kInvalid);
  EXPECT_TRUE(driver.Detach("0000:17:00.0", memory).ok());  // not held for a VM: nothing to do
  EXPECT_EQ(Slurp("bus/pci/drivers/nvidia/unbind"), "");
}

TEST_F(PciDriverTest, HealthNamesWhatIsMissing) {
  std::filesystem::remove_all(dir_.File("sys/bus/pci/drivers/vfio-pci"));
  std::filesystem::remove_all(dir_.File("sys/kernel/iommu_groups"));
  auto problems = Make().Health();
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("vfio-pci is not loaded"), std::string::npos);
  EXPECT_NE(problems[1].find("no IOMMU groups"), std::string::npos);
  PciDriver nowhere("h", Sysfs(dir_.File("none")), DeviceTable(), std::make_unique<PciNames>(""), 0);
  EXPECT_EQ(nowhere.Discover().status().code(), Code::kIoError);
}

}  // namespace
}  // namespace cyborgfs
