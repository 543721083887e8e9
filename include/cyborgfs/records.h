// An accelerator as the REST API and MOUNT/accelerators.json show it.
//
// A record has the Cyborg spec's keys, `uuid` and `acc_specs` (the spec, an
// object), and the value of every file of the accelerator's folder under the
// file's name, typed: text as a string without its trailing newline
// (`status`, `attach`, `name`, `device_type`, ... ; "" where the file is
// empty), JSON files as JSON (`attach_handle` and `mdev_types`: null where
// the file is empty), counts as numbers (`numa_node`, `sriov_totalvfs`,
// `sriov_numvfs`: null where unknown, `remotable` 0 or 1), `virtfns` as an
// array; `maintenance` 0 or 1; `health` (the health file's first line) and `health_reasons` (its
// other lines, an array); `aer_correctable`, `aer_nonfatal`, `aer_fatal`
// (PCIe AER errors since boot; null where the device has no counters); and
// `generation` (+1 at every change: the ETag), `created_at`, `updated_at`
// (unix seconds).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cyborgfs/accelerator.h"
#include "cyborgfs/status.h"
#include "cyborgfs/values.h"

namespace cyborgfs {

// The record of `a` as compact JSON with one trailing newline (a byte that
// is not UTF-8, in a value a user wrote, shown as U+FFFD).
std::string RecordText(const Accelerator& a);

// The body of GET /accelerators and the content of accelerators.json:
// {"accelerator": [record, ...]} (the spec's key), ordered by id, compact,
// with one trailing newline.
std::string ListBody(const std::vector<std::shared_ptr<const Accelerator>>& all);

// A record of the fleet: RecordText with "host" and "host_status" ("up" or
// "down") after "uuid", without the trailing newline.
std::string FleetRecordText(const Accelerator& a, std::string_view host, bool host_up);

// The accelerator a record describes (what another host published): every
// value its files show. kInvalid, saying which key, for what is not such a
// record. The bytes as written (name_bytes, ...) are not in a record: the
// files show the values canonically.
Result<Accelerator> AcceleratorFromRecord(const Json& record);

}  // namespace cyborgfs
