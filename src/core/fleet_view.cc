#include "cyborgfs/fleet_view.h"

#include "cyborgfs/records.h"

namespace cyborgfs {

const FleetHost* FleetView::Host(std::string_view name) const {
  auto it = host_index.find(std::string(name));
  return it == host_index.end() ? nullptr : &hosts[it->second];
}

const FleetHost* FleetView::HostByNumber(uint64_t number) const {
  auto it = host_by_number.find(number);
  return it == host_by_number.end() ? nullptr : &hosts[it->second];
}

const FleetAccelerator* FleetView::Find(std::string_view uuid) const {
  auto it = by_uuid.find(std::string(uuid));
  return it == by_uuid.end() ? nullptr : FindByNumber(it->second);
}

const FleetAccelerator* FleetView::FindByNumber(uint64_t number) const {
  auto it = accelerators.find(number);
  return it == accelerators.end() ? nullptr : it->second.get();
}

bool FleetView::HostUp(const std::string& name) const {
  const FleetHost* host = Host(name);
  return host && host->up;
}

struct FleetView::Rendered {
  std::once_flag once;
  std::shared_ptr<const std::string> body;
};

void IndexFleetView(FleetView& view) {
  view.host_index.clear();
  view.host_by_number.clear();
  view.by_uuid.clear();
  for (size_t i = 0; i < view.hosts.size(); ++i) {
    view.host_index[view.hosts[i].name] = i;
    view.host_by_number[view.hosts[i].number] = i;
  }
  for (const auto& [number, a] : view.accelerators) view.by_uuid[a->record.uuid] = number;
  view.rendered = std::make_shared<FleetView::Rendered>();
}

std::shared_ptr<const std::string> FleetView::ListBody() const {
  std::call_once(rendered->once, [this] {
    std::string body = "{\"accelerator\":[";
    body.reserve(64 + accelerators.size() * 700);
    for (const auto& [number, a] : accelerators) {
      if (body.back() != '[') body += ',';
      body += FleetRecordText(a->record, a->host, HostUp(a->host));
    }
    body += "]}\n";
    rendered->body = std::make_shared<const std::string>(std::move(body));
  });
  return rendered->body;
}

FleetBoard::FleetBoard()
    : current_(std::make_shared<const FleetView>([] {
        FleetView empty;
        IndexFleetView(empty);
        return empty;
      }())) {}

FleetBoard::View FleetBoard::Current() const {
  std::lock_guard lock(mu_);
  return current_;
}

void FleetBoard::Publish(View view) {
  std::lock_guard lock(mu_);
  current_ = std::move(view);
}

}  // namespace cyborgfs
