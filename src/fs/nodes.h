// Inode numbers of the tree, computed rather than stored.
//
// The fixed folders and files have small numbers; accelerator N (its
// accelerator_id, never reused) owns the block N*32 .. N*32+31: its folder,
// one number per attribute row, and its by-name link. So these need no inode
// table, and a number always means the same object. Scratch files, which come
// and go, are numbered from kScratchBase up (their ScratchFile::number(),
// never reused). KernelInodes counts the kernel's references to all of them.
#pragma once

#include <fuse_lowlevel.h>

#include <cstdint>
#include <iterator>
#include <string_view>

#include "cyborgfs/attributes.h"

namespace cyborgfs::fs {

enum class NodeKind {
  kRoot,
  kAccelerators,
  kByName,
  kCreate,
  kRescan,
  kDrivers,
  kStats,
  kList,
  kAcceleratorDir,
  kAttribute,
  kLink,
  kScratch,
  // MOUNT/fleet/ (--fleet): read-only, numbered by the FleetView's numbers.
  kFleet,                     // fleet/
  kFleetHosts,                // fleet/hosts/
  kFleetAccelerators,         // fleet/accelerators/ (links)
  kFleetList,                 // fleet/accelerators.json
  kFleetHost,                 // fleet/hosts/<host>/
  kFleetHostStatus,           // .../status
  kFleetHostLease,            // .../lease_expires_at
  kFleetHostAccelerators,     // .../accelerators/
  kFleetAcceleratorDir,       // .../accelerators/<uuid>/
  kFleetAttribute,            // .../accelerators/<uuid>/<file>
  kFleetLink,                 // fleet/accelerators/<uuid>
  kFleetRequests,             // fleet/requests/ (rmdir of a request's folder deletes it)
  kFleetRequestDir,           // fleet/requests/<uuid>/
  kFleetRequestState,         // .../state
  kFleetRequestHost,          // .../host
  kFleetRequestAccelerators,  // .../accelerators
  kFleetRequestHandle,        // .../attach_handle
  kFleetRequestError,         // .../error
  kFleetRequestRecord,        // .../request
  // fleet/requests/create: written as `create` is, not from the view.
  kFleetRequestCreate,
  kUnknown
};

// Shown from the FleetView (read-only but for rmdir of a request).
inline bool IsFleet(NodeKind kind) { return kind >= NodeKind::kFleet && kind <= NodeKind::kFleetRequestRecord; }

// The files whose value changes without a write or a change the daemon tells
// the kernel of: each reader reads one rendering of them (renderings.h).
inline bool ChangesByItself(NodeKind kind) {
  return kind == NodeKind::kDrivers || kind == NodeKind::kStats || kind == NodeKind::kFleetList ||
         kind == NodeKind::kFleetHostStatus || kind == NodeKind::kFleetHostLease || kind == NodeKind::kFleetAttribute ||
         (kind >= NodeKind::kFleetRequestState && kind <= NodeKind::kFleetRequestRecord);
}

struct Node {
  NodeKind kind = NodeKind::kUnknown;
  int64_t id = 0;           // accelerator id for the per-accelerator kinds; FleetView number for the fleet's
  Attr attr = Attr::kName;  // for kAttribute
};

inline constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;  // 1
inline constexpr fuse_ino_t kAcceleratorsIno = 2;
inline constexpr fuse_ino_t kByNameIno = 3;
inline constexpr fuse_ino_t kCreateIno = 4;
inline constexpr fuse_ino_t kRescanIno = 5;
inline constexpr fuse_ino_t kDriversIno = 6;
inline constexpr fuse_ino_t kStatsIno = 7;
inline constexpr fuse_ino_t kListIno = 8;
inline constexpr fuse_ino_t kFleetIno = 9;
inline constexpr fuse_ino_t kFleetHostsIno = 10;
inline constexpr fuse_ino_t kFleetAcceleratorsIno = 11;
inline constexpr fuse_ino_t kFleetListIno = 12;
inline constexpr fuse_ino_t kFleetRequestsIno = 13;
inline constexpr fuse_ino_t kFleetRequestCreateIno = 14;
inline constexpr fuse_ino_t kBlock = 32;
inline constexpr fuse_ino_t kLinkSlot = kBlock - 1;
inline constexpr fuse_ino_t kScratchBase = fuse_ino_t{1} << 62;
// The fleet's: host N owns kFleetHostBase + N*4 .. +3 (its folder, status,
// lease_expires_at, accelerators/), accelerator N kFleetBase + N*32 .. +31
// (as a local one's block: folder, files, link), request N
// kFleetRequestBase + N*8 .. +7 (its folder, its files).
inline constexpr fuse_ino_t kFleetHostBase = fuse_ino_t{1} << 59;
inline constexpr fuse_ino_t kFleetBase = fuse_ino_t{1} << 60;
inline constexpr fuse_ino_t kFleetRequestBase = fuse_ino_t{1} << 61;
inline constexpr fuse_ino_t kRequestBlock = 8;

// The root's entries, in listing order.
struct RootEntry {
  const char* name;
  fuse_ino_t ino;
  NodeKind kind;
  bool folder;
};
inline constexpr RootEntry kRootEntries[] = {
    {"accelerators", kAcceleratorsIno, NodeKind::kAccelerators, true},
    {"by-name", kByNameIno, NodeKind::kByName, true},
    {"create", kCreateIno, NodeKind::kCreate, false},
    {"rescan", kRescanIno, NodeKind::kRescan, false},
    {"drivers", kDriversIno, NodeKind::kDrivers, false},
    {"stats", kStatsIno, NodeKind::kStats, false},
    {"accelerators.json", kListIno, NodeKind::kList, false},
    {"fleet", kFleetIno, NodeKind::kFleet, true},  // only with --fleet
};
// fleet/'s entries, in listing order.
inline constexpr RootEntry kFleetEntries[] = {
    {"hosts", kFleetHostsIno, NodeKind::kFleetHosts, true},
    {"accelerators", kFleetAcceleratorsIno, NodeKind::kFleetAccelerators, true},
    {"accelerators.json", kFleetListIno, NodeKind::kFleetList, false},
    {"requests", kFleetRequestsIno, NodeKind::kFleetRequests, true},
};
// fleet/requests/'s fixed entry (the requests follow it).
inline constexpr RootEntry kFleetRequestsEntry = {"create", kFleetRequestCreateIno, NodeKind::kFleetRequestCreate,
                                                  false};
// A request folder's files, in listing order (slots 1..6 of its block).
inline constexpr RootEntry kFleetRequestFiles[] = {
    {"state", 1, NodeKind::kFleetRequestState, false},
    {"host", 2, NodeKind::kFleetRequestHost, false},
    {"accelerators", 3, NodeKind::kFleetRequestAccelerators, false},
    {"attach_handle", 4, NodeKind::kFleetRequestHandle, false},
    {"error", 5, NodeKind::kFleetRequestError, false},
    {"request", 6, NodeKind::kFleetRequestRecord, false},
};
// A fleet host folder's entries, in listing order (slots 1..3 of its block).
inline constexpr RootEntry kFleetHostEntries[] = {
    {"status", 1, NodeKind::kFleetHostStatus, false},
    {"lease_expires_at", 2, NodeKind::kFleetHostLease, false},
    {"accelerators", 3, NodeKind::kFleetHostAccelerators, true},
};
inline const RootEntry* FindRootEntry(std::string_view name) {
  for (const RootEntry& entry : kRootEntries) {
    if (name == entry.name) return &entry;
  }
  return nullptr;
}

inline fuse_ino_t DirIno(int64_t id) { return static_cast<fuse_ino_t>(id) * kBlock; }
inline fuse_ino_t AttrIno(int64_t id, Attr attr) { return DirIno(id) + 1 + static_cast<fuse_ino_t>(attr); }
inline fuse_ino_t LinkIno(int64_t id) { return DirIno(id) + kLinkSlot; }
inline fuse_ino_t ScratchIno(uint64_t number) { return kScratchBase + number; }
inline fuse_ino_t FleetHostIno(uint64_t number, fuse_ino_t slot = 0) { return kFleetHostBase + number * 4 + slot; }
inline fuse_ino_t FleetDirIno(uint64_t number) { return kFleetBase + number * kBlock; }
inline fuse_ino_t FleetAttrIno(uint64_t number, Attr attr) {
  return FleetDirIno(number) + 1 + static_cast<fuse_ino_t>(attr);
}
inline fuse_ino_t FleetLinkIno(uint64_t number) { return FleetDirIno(number) + kLinkSlot; }
inline fuse_ino_t FleetRequestIno(uint64_t number, fuse_ino_t slot = 0) {
  return kFleetRequestBase + number * kRequestBlock + slot;
}

inline Node Decode(fuse_ino_t ino) {
  if (ino == kRootIno) return {NodeKind::kRoot};
  for (const RootEntry& entry : kRootEntries) {
    if (ino == entry.ino) return {entry.kind};
  }
  for (const RootEntry& entry : kFleetEntries) {
    if (ino == entry.ino) return {entry.kind};
  }
  if (ino == kFleetRequestsEntry.ino) return {kFleetRequestsEntry.kind};
  if (ino >= kScratchBase) return {NodeKind::kScratch};
  if (ino >= kFleetRequestBase) {
    const auto number = static_cast<int64_t>((ino - kFleetRequestBase) / kRequestBlock);
    const fuse_ino_t slot = (ino - kFleetRequestBase) % kRequestBlock;
    if (number == 0) return {};
    if (slot == 0) return {NodeKind::kFleetRequestDir, number};
    if (slot - 1 < std::size(kFleetRequestFiles)) return {kFleetRequestFiles[slot - 1].kind, number};
    return {};
  }
  if (ino >= kFleetBase) {
    const auto number = static_cast<int64_t>((ino - kFleetBase) / kBlock);
    const fuse_ino_t slot = (ino - kFleetBase) % kBlock;
    if (number == 0) return {};
    if (slot == 0) return {NodeKind::kFleetAcceleratorDir, number};
    if (slot == kLinkSlot) return {NodeKind::kFleetLink, number};
    if (slot - 1 < Attributes().size()) return {NodeKind::kFleetAttribute, number, static_cast<Attr>(slot - 1)};
    return {};
  }
  if (ino >= kFleetHostBase) {
    const auto number = static_cast<int64_t>((ino - kFleetHostBase) / 4);
    const fuse_ino_t slot = (ino - kFleetHostBase) % 4;
    if (number == 0) return {};
    if (slot == 0) return {NodeKind::kFleetHost, number};
    return {kFleetHostEntries[slot - 1].kind, number};
  }
  const int64_t id = static_cast<int64_t>(ino / kBlock);
  const fuse_ino_t slot = ino % kBlock;
  if (id == 0) return {};
  if (slot == 0) return {NodeKind::kAcceleratorDir, id};
  if (slot == kLinkSlot) return {NodeKind::kLink, id};
  if (slot - 1 < Attributes().size()) return {NodeKind::kAttribute, id, static_cast<Attr>(slot - 1)};
  return {};
}

}  // namespace cyborgfs::fs
