// Which PCI devices are accelerators, and of what type.
//
// A device is an accelerator when its vendor:device pair is in the table, or
// else when its class is an accelerator class: GPU for 0x0300 (VGA) and
// 0x0302 (3D), CRYPTO for 0x1000 and 0x1080 (encryption), ACCELERATOR for
// 0x1200 (processing accelerator) and 0x0b40 (co-processor). Network cards,
// storage and bridges are not, unless the table lists them.
//
// The built-in table knows QAT crypto cards and FPGA cards; an operator
// extends or overrides it with a file (--device-table) of lines
//     <vendor>:<device> <DEVICE_TYPE> [<acc_type>]     e.g. 8086:37c8 CRYPTO intel-qat-c62x
//     <vendor>:<device> ignore                          never an accelerator
// with hex ids and `#` comments; a later line for the same pair wins.
//
// Thread safety: immutable once loaded.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "cyborgfs/status.h"

namespace cyborgfs {

struct DeviceKind {
  std::string device_type;  // GPU, FPGA, CRYPTO, ACCELERATOR, ...
  std::string acc_type;     // e.g. "intel-qat-c62x"; empty: derived by the caller
};

class DeviceTable {
 public:
  // The built-in table.
  DeviceTable();

  // Adds the lines of `text` (the file format above); kInvalid naming the
  // line ("line 3: ...") for a malformed one, and nothing is added then.
  Status Add(const std::string& text);

  // The kind of a device of PCI class `class_code` (24 bits, e.g. 0x030200),
  // or nullopt if it is not an accelerator.
  std::optional<DeviceKind> Classify(uint32_t class_code, uint16_t vendor, uint16_t device) const;

 private:
  std::map<uint32_t, std::optional<DeviceKind>> by_id_;  // vendor << 16 | device; nullopt: ignore
};

}  // namespace cyborgfs
