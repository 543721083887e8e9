#include "fleet_tree.h"

#include "cyborgfs/attributes.h"
#include "cyborgfs/values.h"

namespace cyborgfs::fs::fleet_tree {
namespace {

timespec At(int64_t seconds, uint64_t nanoseconds) {
  return timespec{static_cast<time_t>(seconds), static_cast<long>(nanoseconds % 1000000000)};
}

const FleetHost* HostOf(const FleetView& view, const FleetAccelerator& a) { return view.Host(a.host); }

// A text member as a file: the value and a newline, nothing if empty or null.
std::string Line(const Json& value) {
  const std::string text = value.is_string() ? value.get<std::string>() : "";
  return text.empty() ? std::string() : text + "\n";
}

// A request's file of kind `kind`, from its record (accelerator_requests.h).
std::string RequestFile(const Json& record, NodeKind kind) {
  switch (kind) {
    case NodeKind::kFleetRequestState:
      return Line(record["state"]);
    case NodeKind::kFleetRequestHost:
      return Line(record["host"]);
    case NodeKind::kFleetRequestAccelerators: {
      std::string lines;
      for (const Json& uuid : record["accelerators"]) lines += Line(uuid);
      return lines;
    }
    case NodeKind::kFleetRequestHandle:  // as an accelerator's attach_handle file
      return record["attach_handle"].is_null() ? std::string() : RenderJson(record["attach_handle"]);
    case NodeKind::kFleetRequestError:
      return Line(record["error"]);
    default:
      return record.dump() + "\n";
  }
}

}  // namespace

Status ReadOnly(const char* what) {
  return Status::AccessDenied(std::string(what) +
                              ": fleet/ is read-only (a host's accelerators change through that "
                              "host's own mount or API)");
}

fuse_ino_t Lookup(const FleetView& view, const Node& parent, std::string_view name) {
  switch (parent.kind) {
    case NodeKind::kFleet:
      for (const RootEntry& e : kFleetEntries) {
        if (name == e.name) return e.ino;
      }
      return 0;
    case NodeKind::kFleetHosts: {
      const FleetHost* host = view.Host(name);
      return host ? FleetHostIno(host->number) : 0;
    }
    case NodeKind::kFleetAccelerators: {
      const FleetAccelerator* a = view.Find(name);
      return a ? FleetLinkIno(a->number) : 0;
    }
    case NodeKind::kFleetHost:
      if (!view.HostByNumber(static_cast<uint64_t>(parent.id))) return 0;
      for (const RootEntry& e : kFleetHostEntries) {
        if (name == e.name) return FleetHostIno(static_cast<uint64_t>(parent.id), e.ino);
      }
      return 0;
    case NodeKind::kFleetHostAccelerators: {
      const FleetHost* host = view.HostByNumber(static_cast<uint64_t>(parent.id));
      const FleetAccelerator* a = view.Find(name);
      return host && a && a->host == host->name ? FleetDirIno(a->number) : 0;
    }
    case NodeKind::kFleetRequests: {
      if (name == kFleetRequestsEntry.name) return kFleetRequestsEntry.ino;
      const FleetRequest* r = view.FindRequest(name);
      return r ? FleetRequestIno(r->number) : 0;
    }
    case NodeKind::kFleetRequestDir:
      if (!view.FindRequestByNumber(static_cast<uint64_t>(parent.id))) return 0;
      for (const RootEntry& e : kFleetRequestFiles) {
        if (name == e.name) return FleetRequestIno(static_cast<uint64_t>(parent.id), e.ino);
      }
      return 0;
    case NodeKind::kFleetAcceleratorDir: {
      const AttrInfo* info = FindAttribute(name);
      return info && view.FindByNumber(static_cast<uint64_t>(parent.id))
                 ? FleetAttrIno(static_cast<uint64_t>(parent.id), info->attr)
                 : 0;
    }
    default:
      return 0;
  }
}

Result<Item> Describe(const FleetView& view, const Node& node, time_t mounted_at) {
  Item item;
  const auto number = static_cast<uint64_t>(node.id);
  const auto folder = [&](timespec mtime) {
    item.mode = S_IFDIR | 0555;
    item.mtime = mtime;
    return item;
  };
  const auto file = [&](std::string content, timespec mtime) {
    item.mode = S_IFREG | 0444;
    item.content = std::move(content);
    item.mtime = mtime;
    return item;
  };
  const timespec listing = At(mounted_at, view.names_revision);  // every folder's: names come and go together
  switch (node.kind) {
    case NodeKind::kFleet:
    case NodeKind::kFleetHosts:
    case NodeKind::kFleetAccelerators:
      return folder(listing);
    case NodeKind::kFleetList:
      item.mode = S_IFREG | 0444;
      item.shared = view.ListBody();
      item.mtime = At(view.read_at, view.revision);
      return item;
    case NodeKind::kFleetRequests:  // its owner and admin group may rmdir a request
      folder(listing);
      item.mode = S_IFDIR | 0775;
      return item;
    default:
      break;
  }
  if (node.kind >= NodeKind::kFleetRequestDir && node.kind <= NodeKind::kFleetRequestRecord) {
    const FleetRequest* r = view.FindRequestByNumber(number);
    if (!r) return Status::NotFound("no such accelerator request in the fleet");
    return node.kind == NodeKind::kFleetRequestDir
               ? folder(At(r->record.value("created_at", int64_t{0}), 0))
               : file(RequestFile(r->record, node.kind),
                      At(r->record.value("updated_at", int64_t{0}), static_cast<uint64_t>(r->revision)));
  }
  if (node.kind == NodeKind::kFleetHost || node.kind == NodeKind::kFleetHostStatus ||
      node.kind == NodeKind::kFleetHostLease || node.kind == NodeKind::kFleetHostAccelerators) {
    const FleetHost* host = view.HostByNumber(number);
    if (!host) return Status::NotFound("no such host in the fleet");
    if (node.kind == NodeKind::kFleetHostStatus) {
      return file(host->up ? "up\n" : "down\n", At(host->status_since, host->status_changes));
    }
    if (node.kind == NodeKind::kFleetHostLease) {
      return file(std::to_string(host->lease_expires_at) + "\n", At(host->lease_expires_at, 0));
    }
    return folder(listing);
  }
  const FleetAccelerator* a = view.FindByNumber(number);
  if (!a) return Status::NotFound("no such accelerator in the fleet");
  const Accelerator& r = a->record;
  switch (node.kind) {
    case NodeKind::kFleetAcceleratorDir:
      return folder(At(r.created_at, 0));
    case NodeKind::kFleetAttribute:
      return file(AttributeInfo(node.attr).render(r), At(r.updated_at, static_cast<uint64_t>(a->revision)));
    case NodeKind::kFleetLink:
      item.mode = S_IFLNK | 0777;
      item.content = "../hosts/" + a->host + "/accelerators/" + r.uuid;
      item.mtime = At(r.created_at, static_cast<uint64_t>(a->revision));
      return item;
    default:
      return Status::NotFound("no such file");
  }
}

std::vector<Entry> List(const FleetView& view, const Node& folder, off_t offset, fuse_ino_t& parent) {
  std::vector<Entry> entries;
  const auto number = static_cast<uint64_t>(folder.id);
  const auto fixed = [&](const auto& table, auto ino_of) {
    for (off_t k = std::max<off_t>(offset - 2, 0); k < static_cast<off_t>(std::size(table)); ++k) {
      entries.push_back(
          {table[k].name, ino_of(table[k]), static_cast<mode_t>(table[k].folder ? S_IFDIR : S_IFREG), 3 + k});
    }
  };
  const auto accelerator = [&](const FleetAccelerator& a, fuse_ino_t ino, mode_t type) {
    if (static_cast<off_t>(2 + a.number) > offset) {
      entries.push_back({a.record.uuid, ino, type, static_cast<off_t>(2 + a.number)});
    }
  };
  switch (folder.kind) {
    case NodeKind::kFleet:
      parent = kRootIno;
      fixed(kFleetEntries, [](const RootEntry& e) { return e.ino; });
      break;
    case NodeKind::kFleetHosts:
      parent = kFleetIno;
      for (const FleetHost& host : view.hosts) {
        if (static_cast<off_t>(2 + host.number) > offset) {
          entries.push_back({host.name, FleetHostIno(host.number), S_IFDIR, static_cast<off_t>(2 + host.number)});
        }
      }
      break;
    case NodeKind::kFleetAccelerators:
      parent = kFleetIno;
      for (auto it = view.accelerators.upper_bound(static_cast<uint64_t>(std::max<off_t>(offset - 2, 0)));
           it != view.accelerators.end(); ++it) {
        accelerator(*it->second, FleetLinkIno(it->first), S_IFLNK);
      }
      break;
    case NodeKind::kFleetHost:
      parent = kFleetHostsIno;
      if (view.HostByNumber(number))
        fixed(kFleetHostEntries, [&](const RootEntry& e) { return FleetHostIno(number, e.ino); });
      break;
    case NodeKind::kFleetHostAccelerators:
      parent = FleetHostIno(number);
      if (const FleetHost* host = view.HostByNumber(number)) {
        for (const auto& a : host->accelerators) accelerator(*a, FleetDirIno(a->number), S_IFDIR);
      }
      break;
    case NodeKind::kFleetRequests:
      parent = kFleetIno;
      if (offset < 3) entries.push_back({kFleetRequestsEntry.name, kFleetRequestsEntry.ino, S_IFREG, 3});
      for (auto it = view.requests.upper_bound(static_cast<uint64_t>(std::max<off_t>(offset - 3, 0)));
           it != view.requests.end(); ++it) {
        entries.push_back({it->second->uuid, FleetRequestIno(it->first), S_IFDIR, static_cast<off_t>(3 + it->first)});
      }
      break;
    case NodeKind::kFleetRequestDir:
      parent = kFleetRequestsIno;
      if (view.FindRequestByNumber(number))
        fixed(kFleetRequestFiles, [&](const RootEntry& e) { return FleetRequestIno(number, e.ino); });
      break;
    case NodeKind::kFleetAcceleratorDir: {
      const FleetAccelerator* a = view.FindByNumber(number);
      if (!a) break;
      const FleetHost* host = HostOf(view, *a);
      parent = host ? FleetHostIno(host->number, 3) : kFleetHostsIno;
      const auto& attributes = Attributes();
      for (off_t k = std::max<off_t>(offset - 2, 0); k < static_cast<off_t>(attributes.size()); ++k) {
        entries.push_back({attributes[k].name, FleetAttrIno(number, attributes[k].attr), S_IFREG, 3 + k});
      }
      break;
    }
    default:
      break;
  }
  return entries;
}

}  // namespace cyborgfs::fs::fleet_tree
