// Who asks: what the audit trail names and the front ends' permission rule needs.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace cyborgfs {

struct Caller {
  enum class Kind {
    kProcess,          // a process asked (a FUSE request, a peer of the API socket)
    kDaemon,           // the daemon of its own accord (a rescan, a repair at start)
    kKernelWriteback,  // the kernel wrote a shared mapping's dirty pages back (no process named)
    kToken,            // a client over TCP that showed the API token (no process known)
    kFleetRequest,     // the daemon, binding or unbinding the fleet's accelerator request `address`
  };
  Kind kind = Kind::kDaemon;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, where the front end knows them
  pid_t pid = 0;
  std::string address;  // kToken: the client's address

  static Caller Daemon() { return {}; }
  static Caller FleetRequest(std::string uuid) { return {Kind::kFleetRequest, 0, 0, {}, 0, std::move(uuid)}; }
  static Caller Process(uid_t uid, gid_t gid, pid_t pid, std::vector<gid_t> groups = {}) {
    return {Kind::kProcess, uid, gid, std::move(groups), pid, {}};
  }

  // The files' rule, for the front ends that check it themselves: root and
  // the members of the admin group may change accelerators; everyone else may
  // read. (The file front end leaves it to the kernel: the tree's modes.)
  bool MayChange(gid_t admin_group) const {
    if (kind != Kind::kProcess) return true;
    return uid == 0 || gid == admin_group || std::find(groups.begin(), groups.end(), admin_group) != groups.end();
  }
};

}  // namespace cyborgfs
