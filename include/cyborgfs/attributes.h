// The files of an accelerator folder, as a table.
//
// One row per file, in listing order: its name, its mode, how a write to it
// is taken and how its content is rendered. Adding a file means adding a row
// here (and, for a writable one, its apply step in Service).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cyborgfs/accelerator.h"

namespace cyborgfs {

enum class Attr {
  kName,
  kSpec,
  kAttach,
  kStatus,
  kError,
  kDeviceType,
  kAccType,
  kVendorId,
  kProductId,
  kRemotable,
  kDriver,
  kAttachHandle,
  kReportedBy,
  kModel,
  kNumaNode,
  kIommuGroup,
  kPhysfn,
  kMdevTypes,
  kVirtfns,
  kSriovTotalvfs,
  kSriovNumvfs,
  kSubsystemId,
  kHealth,
  kMaintenance,
};

enum class WriteKind {
  kReadOnly,  // 0444: opening for writing is refused
  kText,      // one value per write(2), as sysfs does; at most kMaxTextBytes
  kDocument,  // a JSON document, possibly in several writes (DocumentBuffer)
};

struct AttrInfo {
  Attr attr;
  const char* name;
  unsigned mode;  // permission bits
  WriteKind write;
  // The file's exact content: what was written when the user wrote it,
  // otherwise the canonical rendering (text + '\n', pretty JSON + '\n').
  std::string (*render)(const Accelerator&);
};

// Every row, in the order `ls -f` lists them.
const std::vector<AttrInfo>& Attributes();

// The row for `attr` / for the file called `name` (nullptr when none is).
const AttrInfo& AttributeInfo(Attr attr);
const AttrInfo* FindAttribute(std::string_view name);

}  // namespace cyborgfs
