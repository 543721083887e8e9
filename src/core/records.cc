#include "cyborgfs/records.h"

#include <cstdio>

namespace cyborgfs {
namespace {

// Written directly, not through a JSON DOM: a record costs one pass over its
// values, and the list of 100 000 no tree of millions of nodes. The text is
// what nlohmann::json's compact dump would make of the same object.

// `text` as a JSON string: the escapes of a compact dump; a byte that is not
// UTF-8 (in a value a user wrote) becomes U+FFFD.
void AppendString(std::string& out, std::string_view text) {
  if (FirstNonUtf8(text)) {
    out += Json(std::string(text)).dump(-1, ' ', false, Json::error_handler_t::replace);
    return;
  }
  out += '"';
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

// Appends "key": (the value follows).
void Key(std::string& out, const char* key) {
  out += out.back() == '{' ? "\"" : ",\"";
  out += key;
  out += "\":";
}

void AppendString(std::string& out, const char* key, std::string_view value) {
  Key(out, key);
  AppendString(out, value);
}

void AppendCount(std::string& out, const char* key, int64_t value, bool null_if_negative = false) {
  Key(out, key);
  out += null_if_negative && value < 0 ? "null" : std::to_string(value);
}

// Compact JSON text the record keeps (the spec, the attach handle), or null.
void AppendJsonText(std::string& out, const char* key, const std::string& compact, const char* if_empty) {
  Key(out, key);
  out += compact.empty() ? if_empty : compact;
}

void AppendRecord(std::string& out, const Accelerator& a) {
  const HostFacts& f = a.facts;
  out += '{';
  AppendString(out, "uuid", a.uuid);
  AppendJsonText(out, "acc_specs", a.spec, "{}");
  AppendString(out, "name", a.name);
  AppendString(out, "status", StateName(a.state));
  AppendString(out, "attach", a.attachment);
  AppendJsonText(out, "attach_handle", a.attach_handle, "null");
  AppendString(out, "error", a.last_error);
  AppendString(out, "device_type", a.device_type);
  AppendString(out, "acc_type", a.acc_type);
  AppendString(out, "vendor_id", a.vendor_id);
  AppendString(out, "product_id", a.product_id);
  AppendCount(out, "remotable", a.remotable ? 1 : 0);
  AppendString(out, "driver", f.kernel_driver);
  AppendString(out, "reported_by", a.driver);
  AppendString(out, "model", f.model);
  AppendCount(out, "numa_node", f.numa_node, true);
  AppendString(out, "iommu_group", f.iommu_group);
  AppendString(out, "physfn", f.physfn);
  Key(out, "virtfns");
  out += '[';
  for (size_t i = 0; i < f.virtfns.size(); ++i) {
    if (i) out += ',';
    AppendString(out, f.virtfns[i]);
  }
  out += ']';
  AppendCount(out, "sriov_totalvfs", f.sriov_totalvfs, true);
  AppendCount(out, "sriov_numvfs", f.sriov_numvfs, true);
  AppendString(out, "subsystem_id", f.subsystem_id);
  Key(out, "mdev_types");  // null for a device without mediated-device types, as the empty file
  if (f.mdev_types.empty()) out += "null";
  for (auto it = f.mdev_types.begin(); it != f.mdev_types.end(); ++it) {
    out += it == f.mdev_types.begin() ? "{" : ",";
    AppendString(out, it->first);
    out += ":{";
    AppendString(out, "name", it->second.name);
    AppendCount(out, "available_instances", it->second.available_instances);
    out += '}';
  }
  if (!f.mdev_types.empty()) out += '}';
  AppendCount(out, "generation", a.generation);
  AppendCount(out, "created_at", a.created_at);
  AppendCount(out, "updated_at", a.updated_at);
  out += '}';
}

}  // namespace

std::string RecordText(const Accelerator& a) {
  std::string out;
  out.reserve(640);
  AppendRecord(out, a);
  out += '\n';
  return out;
}

std::string ListBody(const std::vector<std::shared_ptr<const Accelerator>>& all) {
  std::string out = "{\"accelerator\":[";
  out.reserve(64 + all.size() * 640);
  for (size_t i = 0; i < all.size(); ++i) {
    if (i) out += ',';
    AppendRecord(out, *all[i]);
  }
  out += "]}\n";
  return out;
}

}  // namespace cyborgfs
