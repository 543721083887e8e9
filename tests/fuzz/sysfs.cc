// What the pci driver reads from sysfs and the operator's device table:
// hex ids, small counts, the table's lines. Properties: values stay in range;
// a table that loads classifies without failing.
#include "sysfs.h"

#include <string>

#include "device_table.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cyborgfs;
  const std::string text(AsText(data, size));
  if (auto hex = ParseSysfsHex(text)) FUZZ_CHECK(*hex <= 0xffffff);
  const int count = ParseSysfsCount(text);
  FUZZ_CHECK(count >= -1 && count < (1 << 30));
  DeviceTable table;
  if (table.Add(text).ok() && size >= 7) {
    (void)table.Classify(uint32_t{data[0]} << 16 | uint32_t{data[1]} << 8 | data[2],
                         static_cast<uint16_t>(data[3] << 8 | data[4]), static_cast<uint16_t>(data[5] << 8 | data[6]));
  }
  return 0;
}
