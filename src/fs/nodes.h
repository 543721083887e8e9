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
  kUnknown
};

struct Node {
  NodeKind kind = NodeKind::kUnknown;
  int64_t id = 0;           // accelerator id for the per-accelerator kinds
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
inline constexpr fuse_ino_t kBlock = 32;
inline constexpr fuse_ino_t kLinkSlot = kBlock - 1;
inline constexpr fuse_ino_t kScratchBase = fuse_ino_t{1} << 62;

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

inline Node Decode(fuse_ino_t ino) {
  if (ino == kRootIno) return {NodeKind::kRoot};
  for (const RootEntry& entry : kRootEntries) {
    if (ino == entry.ino) return {entry.kind};
  }
  if (ino >= kScratchBase) return {NodeKind::kScratch};
  const int64_t id = static_cast<int64_t>(ino / kBlock);
  const fuse_ino_t slot = ino % kBlock;
  if (id == 0) return {};
  if (slot == 0) return {NodeKind::kAcceleratorDir, id};
  if (slot == kLinkSlot) return {NodeKind::kLink, id};
  if (slot - 1 < Attributes().size()) return {NodeKind::kAttribute, id, static_cast<Attr>(slot - 1)};
  return {};
}

}  // namespace cyborgfs::fs
