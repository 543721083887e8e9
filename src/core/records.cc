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

void AppendStrings(std::string& out, const char* key, const std::vector<std::string>& values) {
  Key(out, key);
  out += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    AppendString(out, values[i]);
  }
  out += ']';
}

// Compact JSON text the record keeps (the spec, the attach handle), or null.
void AppendJsonText(std::string& out, const char* key, const std::string& compact, const char* if_empty) {
  Key(out, key);
  out += compact.empty() ? if_empty : compact;
}

// `host` (with `host_up`): a fleet record's.
void AppendRecord(std::string& out, const Accelerator& a, std::string_view host = {}, bool host_up = false) {
  const HostFacts& f = a.facts;
  out += '{';
  AppendString(out, "uuid", a.uuid);
  if (!host.empty()) {
    AppendString(out, "host", host);
    AppendString(out, "host_status", host_up ? "up" : "down");
  }
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
  AppendStrings(out, "virtfns", f.virtfns);
  AppendCount(out, "sriov_totalvfs", f.sriov_totalvfs, true);
  AppendCount(out, "sriov_numvfs", f.sriov_numvfs, true);
  AppendString(out, "subsystem_id", f.subsystem_id);
  AppendCount(out, "maintenance", a.maintenance ? 1 : 0);
  AppendString(out, "health", f.health);
  AppendStrings(out, "health_reasons", f.health_reasons);
  AppendCount(out, "aer_correctable", f.aer_correctable, true);
  AppendCount(out, "aer_nonfatal", f.aer_nonfatal, true);
  AppendCount(out, "aer_fatal", f.aer_fatal, true);
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

// The record's `key`, which must be of the JSON type `is` tests; nullptr if
// it is missing (or null, where `nullable`).
Result<const Json*> Member(const Json& record, const char* key, bool (Json::*is)() const, bool nullable = false) {
  auto it = record.find(key);
  if (it == record.end() || (nullable && it->is_null())) return static_cast<const Json*>(nullptr);
  if (!((*it).*is)()) return Status::Invalid(std::string("the record's \"") + key + "\" is not of its type");
  return &*it;
}

}  // namespace

std::string FleetRecordText(const Accelerator& a, std::string_view host, bool host_up) {
  std::string out;
  out.reserve(680);
  AppendRecord(out, a, host, host_up);
  return out;
}

Result<Accelerator> AcceleratorFromRecord(const Json& record) {
  if (!record.is_object()) return Status::Invalid("a record is a JSON object");
  Accelerator a;
  Status bad;
  // Text values: absent is empty.
  auto text = [&](const char* key, std::string& into) {
    auto member = Member(record, key, &Json::is_string);
    if (!member.ok()) bad = member.status();
    if (member.ok() && *member) into = (*member)->get<std::string>();
  };
  auto count = [&](const char* key, auto& into) {  // absent or null: unknown (-1)
    auto member = Member(record, key, &Json::is_number_integer, true);
    if (!member.ok()) bad = member.status();
    into = member.ok() && *member ? (*member)->get<std::remove_reference_t<decltype(into)>>() : -1;
  };
  auto object = [&](const char* key, std::string& into, const char* if_absent) {  // compact JSON text
    auto member = Member(record, key, &Json::is_object, true);
    if (!member.ok()) bad = member.status();
    into = member.ok() && *member ? (*member)->dump() : if_absent;
  };
  auto strings = [&](const char* key, std::vector<std::string>& into) {  // absent or null: none
    auto member = Member(record, key, &Json::is_array, true);
    if (!member.ok()) bad = member.status();
    if (!member.ok() || !*member) return;
    for (const Json& item : **member) {
      if (!item.is_string()) {
        bad = Status::Invalid(std::string("the record's \"") + key + "\" holds a value that is not a string");
        return;
      }
      into.push_back(item.get<std::string>());
    }
  };
  std::string status;
  text("uuid", a.uuid);
  object("acc_specs", a.spec, "{}");
  text("name", a.name);
  text("status", status);
  text("attach", a.attachment);
  object("attach_handle", a.attach_handle, "");
  text("error", a.last_error);
  text("device_type", a.device_type);
  text("acc_type", a.acc_type);
  text("vendor_id", a.vendor_id);
  text("product_id", a.product_id);
  int64_t remotable = 0;
  count("remotable", remotable);
  a.remotable = remotable == 1;
  HostFacts& f = a.facts;
  text("driver", f.kernel_driver);
  text("reported_by", a.driver);
  text("model", f.model);
  count("numa_node", f.numa_node);
  text("iommu_group", f.iommu_group);
  text("physfn", f.physfn);
  count("sriov_totalvfs", f.sriov_totalvfs);
  count("sriov_numvfs", f.sriov_numvfs);
  text("subsystem_id", f.subsystem_id);
  int64_t maintenance = 0;
  count("maintenance", maintenance);
  a.maintenance = maintenance == 1;
  text("health", f.health);
  count("aer_correctable", f.aer_correctable);
  count("aer_nonfatal", f.aer_nonfatal);
  count("aer_fatal", f.aer_fatal);
  strings("health_reasons", f.health_reasons);
  count("generation", a.generation);
  count("created_at", a.created_at);
  count("updated_at", a.updated_at);
  strings("virtfns", f.virtfns);
  if (auto types = Member(record, "mdev_types", &Json::is_object, true); !types.ok()) {
    bad = types.status();
  } else if (*types) {
    for (const auto& [type, offer] : (*types)->items()) {
      if (!offer.is_object() || !offer.value("name", Json()).is_string() ||
          !offer.value("available_instances", Json()).is_number_integer()) {
        return Status::Invalid("the record's \"mdev_types\" holds " + type +
                               ", not {\"name\", \"available_instances\"}");
      }
      f.mdev_types[type] = {offer["name"].get<std::string>(), offer["available_instances"].get<int>()};
    }
  }
  if (!bad.ok()) return bad;
  if (!IsCanonicalUuid(a.uuid)) return Status::Invalid("the record's \"uuid\" is not a lowercase canonical uuid");
  const auto state = StateFromName(status);
  if (!state) return Status::Invalid("the record's \"status\" is not a state: \"" + status + "\"");
  a.state = *state;
  return a;
}

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
