#include "device_table.h"

#include <sstream>

namespace cyborgfs {
namespace {

uint32_t Key(uint16_t vendor, uint16_t device) { return uint32_t{vendor} << 16 | device; }

struct BuiltinRow {
  uint16_t vendor, device;
  const char* device_type;
  const char* acc_type;
};

// Cards whose PCI class does not say "accelerator" (QAT reports 0x0b40 on
// some generations and 0x1200 on others; FPGA cards 0x1200 or 0x0580).
constexpr BuiltinRow kBuiltin[] = {
    {0x8086, 0x0435, "CRYPTO", "intel-qat-dh895xcc"},
    {0x8086, 0x0443, "CRYPTO", "intel-qat-dh895xcc-vf"},
    {0x8086, 0x37c8, "CRYPTO", "intel-qat-c62x"},
    {0x8086, 0x37c9, "CRYPTO", "intel-qat-c62x-vf"},
    {0x8086, 0x19e2, "CRYPTO", "intel-qat-c3xxx"},
    {0x8086, 0x19e3, "CRYPTO", "intel-qat-c3xxx-vf"},
    {0x8086, 0x4940, "CRYPTO", "intel-qat-4xxx"},
    {0x8086, 0x4941, "CRYPTO", "intel-qat-4xxx-vf"},
    {0x8086, 0x09c4, "FPGA", "intel-pac-arria10"},
    {0x8086, 0x09c5, "FPGA", "intel-pac-arria10-vf"},
    {0x8086, 0x0b2b, "FPGA", "intel-pac-d5005"},
    {0x8086, 0x0b30, "FPGA", "intel-pac-n3000"},
    {0x8086, 0xbcc0, "FPGA", "intel-ofs"},
    {0x10ee, 0x5000, "FPGA", "xilinx-alveo-u200"},
    {0x10ee, 0x5001, "FPGA", "xilinx-alveo-u200-user"},
    {0x10ee, 0x5004, "FPGA", "xilinx-alveo-u250"},
    {0x10ee, 0x5005, "FPGA", "xilinx-alveo-u250-user"},
    {0x10ee, 0x500c, "FPGA", "xilinx-alveo-u280"},
    {0x10ee, 0x500d, "FPGA", "xilinx-alveo-u280-user"},
};

std::optional<uint16_t> Hex16(const std::string& text) {
  if (text.empty() || text.size() > 4) return std::nullopt;
  uint32_t value = 0;
  for (char c : text) {
    const int digit = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                      : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
                      : (c >= 'A' && c <= 'F')                    ? c - 'A' + 10
                                                                  : -1;
    if (digit < 0) return std::nullopt;
    value = value * 16 + static_cast<uint32_t>(digit);
  }
  return static_cast<uint16_t>(value);
}

bool IsTypeWord(const std::string& word) {
  if (word.empty()) return false;
  for (char c : word) {
    if (!std::isupper(static_cast<unsigned char>(c)) && !std::isdigit(static_cast<unsigned char>(c)) && c != '_') {
      return false;
    }
  }
  return true;
}

}  // namespace

DeviceTable::DeviceTable() {
  for (const BuiltinRow& row : kBuiltin)
    by_id_[Key(row.vendor, row.device)] = DeviceKind{row.device_type, row.acc_type};
}

Status DeviceTable::Add(const std::string& text) {
  std::map<uint32_t, std::optional<DeviceKind>> added;
  std::istringstream lines(text);
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string ids, type, acc_type, extra;
    if (!(words >> ids)) continue;
    words >> type >> acc_type >> extra;
    const auto colon = ids.find(':');
    const auto vendor = colon == std::string::npos ? std::nullopt : Hex16(ids.substr(0, colon));
    const auto device = colon == std::string::npos ? std::nullopt : Hex16(ids.substr(colon + 1));
    auto where = [&] { return "line " + std::to_string(number) + ": "; };
    if (!vendor || !device) return Status::Invalid(where() + "\"" + ids + "\" is not <vendor>:<device> in hex");
    if (!extra.empty()) return Status::Invalid(where() + "unexpected \"" + extra + "\"");
    if (type == "ignore" && acc_type.empty()) {
      added[Key(*vendor, *device)] = std::nullopt;
    } else if (IsTypeWord(type)) {
      added[Key(*vendor, *device)] = DeviceKind{type, acc_type};
    } else {
      return Status::Invalid(where() + "expected a DEVICE_TYPE in capitals (GPU, FPGA, CRYPTO, ...) or \"ignore\"");
    }
  }
  for (auto& [key, kind] : added) by_id_[key] = kind;
  return Status::Ok();
}

std::optional<DeviceKind> DeviceTable::Classify(uint32_t class_code, uint16_t vendor, uint16_t device) const {
  if (auto it = by_id_.find(Key(vendor, device)); it != by_id_.end()) return it->second;
  switch (class_code >> 8) {
    case 0x0300:
    case 0x0302:
      return DeviceKind{"GPU", ""};
    case 0x1000:
    case 0x1080:
      return DeviceKind{"CRYPTO", ""};
    case 0x1200:
    case 0x0b40:
      return DeviceKind{"ACCELERATOR", ""};
    default:
      return std::nullopt;
  }
}

}  // namespace cyborgfs
