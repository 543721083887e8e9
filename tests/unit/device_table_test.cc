#include "device_table.h"

#include <gtest/gtest.h>

namespace cyborgfs {
namespace {

std::string TypeOf(const DeviceTable& table, uint32_t class_code, uint16_t vendor, uint16_t device) {
  auto kind = table.Classify(class_code, vendor, device);
  return kind ? kind->device_type : "-";
}

TEST(DeviceTable, ClassifiesByIdThenByClass) {
  DeviceTable table;
  EXPECT_EQ(TypeOf(table, 0x030200, 0x10de, 0x2330), "GPU");
  EXPECT_EQ(TypeOf(table, 0x030000, 0x1002, 0x73bf), "GPU");
  EXPECT_EQ(TypeOf(table, 0x100000, 0x1234, 0x0001), "CRYPTO");
  EXPECT_EQ(TypeOf(table, 0x108000, 0x1234, 0x0001), "CRYPTO");
  EXPECT_EQ(TypeOf(table, 0x0b4000, 0x8086, 0x37c8), "CRYPTO");  // QAT by id, not by its co-processor class
  EXPECT_EQ(TypeOf(table, 0x120000, 0x8086, 0x09c4), "FPGA");
  EXPECT_EQ(TypeOf(table, 0x058000, 0x10ee, 0x5005), "FPGA");
  EXPECT_EQ(TypeOf(table, 0x120000, 0x1e52, 0x0100), "ACCELERATOR");
  EXPECT_EQ(TypeOf(table, 0x0b4000, 0x1234, 0x0002), "ACCELERATOR");
  for (uint32_t ignored : {0x020000u, 0x010802u, 0x060400u, 0x0c0330u}) {
    EXPECT_EQ(TypeOf(table, ignored, 0x8086, 0x1572), "-") << std::hex << ignored;
  }
  EXPECT_EQ(table.Classify(0x0b4000, 0x8086, 0x37c8)->acc_type, "intel-qat-c62x");
}

TEST(DeviceTable, AFileAddsOverridesAndIgnores) {
  DeviceTable table;
  ASSERT_TRUE(table
                  .Add("# ours\n8086:1572 ACCELERATOR smartnic  # the NIC\n\n10DE:2330 ignore\n"
                       "8086:37c8 CRYPTO qat-custom\n")
                  .ok());
  EXPECT_EQ(TypeOf(table, 0x020000, 0x8086, 0x1572), "ACCELERATOR");
  EXPECT_EQ(table.Classify(0x020000, 0x8086, 0x1572)->acc_type, "smartnic");
  EXPECT_EQ(TypeOf(table, 0x030200, 0x10de, 0x2330), "-");
  EXPECT_EQ(table.Classify(0x0b4000, 0x8086, 0x37c8)->acc_type, "qat-custom");
}

TEST(DeviceTable, AMalformedLineIsRefusedWithItsNumberAndAddsNothing) {
  DeviceTable table;
  for (const char* bad : {"8086:1572 ACCELERATOR x\n8086 GPU\n", "8086:1572 gpu\n", "8086:12345 GPU\n",
                          "8086:1572 GPU a b\n", "zz:1572 GPU\n"}) {
    Status s = table.Add(bad);
    EXPECT_EQ(s.code(), Code::kInvalid) << bad;
    EXPECT_EQ(s.message().rfind("line ", 0), 0u) << s.message();
  }
  EXPECT_EQ(TypeOf(table, 0x020000, 0x8086, 0x1572), "-");
}

}  // namespace
}  // namespace cyborgfs
