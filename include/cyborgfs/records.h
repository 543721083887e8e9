// An accelerator as the REST API and MOUNT/accelerators.json show it.
//
// A record has the Cyborg spec's keys, `uuid` and `acc_specs` (the spec, an
// object), and the value of every file of the accelerator's folder under the
// file's name, typed: text as a string without its trailing newline
// (`status`, `attach`, `name`, `device_type`, ... ; "" where the file is
// empty), JSON files as JSON (`attach_handle` and `mdev_types`: null where
// the file is empty), counts as numbers (`numa_node`, `sriov_totalvfs`,
// `sriov_numvfs`: null where unknown, `remotable` 0 or 1), `virtfns` as an
// array; and `generation` (+1 at every change: the ETag), `created_at`,
// `updated_at` (unix seconds).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cyborgfs/accelerator.h"
#include "cyborgfs/values.h"

namespace cyborgfs {

// The record of `a` as compact JSON with one trailing newline (a byte that
// is not UTF-8, in a value a user wrote, shown as U+FFFD).
std::string RecordText(const Accelerator& a);

// The body of GET /accelerators and the content of accelerators.json:
// {"accelerator": [record, ...]} (the spec's key), ordered by id, compact,
// with one trailing newline.
std::string ListBody(const std::vector<std::shared_ptr<const Accelerator>>& all);

}  // namespace cyborgfs
