// MOUNT/fleet/ (--fleet): the FleetView as a read-only tree.
//
//     fleet/hosts/<host>/status            up | down (the lease, on the server's clock)
//     fleet/hosts/<host>/lease_expires_at  unix seconds, the server's clock
//     fleet/hosts/<host>/accelerators/<uuid>/<file>   as accelerators/<uuid>/, 0444
//     fleet/accelerators/<uuid> -> ../hosts/<host>/accelerators/<uuid>
//     fleet/accelerators.json              every host's records, each with "host"
//     fleet/requests/create                a request body written here makes one (0220)
//     fleet/requests/<uuid>/state          Initial | BindStarted | Bound | ... (accelerator_requests.h)
//     fleet/requests/<uuid>/host           the host whose accelerators it holds (empty before)
//     fleet/requests/<uuid>/accelerators   their uuids, one per line
//     fleet/requests/<uuid>/attach_handle  the first one's handle, once Bound (JSON)
//     fleet/requests/<uuid>/error          why it failed
//     fleet/requests/<uuid>/request        the whole request, as GET /fleet/accelerator_requests/{uuid}
//
// (rmdir of fleet/requests/<uuid> deletes the request: the Filesystem's.)
// Nothing of it is cached by the kernel (entry and attribute timeouts 0): it
// changes when PostgreSQL says so, and every look at it is answered from the
// view the reader last published. Every value has an mtime of its own that
// changes with it, so the kernel drops pages it kept of an older one.
// Pure functions of a view: no state, no locks.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cyborgfs/fleet_view.h"
#include "cyborgfs/status.h"
#include "nodes.h"

namespace cyborgfs::fs::fleet_tree {

// What a change of the tree is told (EACCES).
Status ReadOnly(const char* what);

// The inode `name` names in fleet folder `parent`; 0 if none.
fuse_ino_t Lookup(const FleetView& view, const Node& parent, std::string_view name);

struct Item {
  mode_t mode = 0;                            // type and permission bits
  std::string content;                        // a file's or a link's; empty for folders
  std::shared_ptr<const std::string> shared;  // instead of content: accelerators.json's (megabytes)
  timespec mtime{};
  const std::string& text() const { return shared ? *shared : content; }
};
// kNotFound for what the view does not have (any more).
Result<Item> Describe(const FleetView& view, const Node& node, time_t mounted_at);

struct Entry {
  std::string name;
  fuse_ino_t ino;
  mode_t type;
  off_t cookie;  // 3 + index for fixed entries, 2 + number for hosts and accelerators, 3 + number for requests
};
// The entries of fleet folder `folder` after cookie `offset`, in cookie order
// ("." and ".." are the caller's); `parent` is the folder's parent.
std::vector<Entry> List(const FleetView& view, const Node& folder, off_t offset, fuse_ino_t& parent);

}  // namespace cyborgfs::fs::fleet_tree
