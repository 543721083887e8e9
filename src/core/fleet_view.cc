#include "cyborgfs/fleet_view.h"

#include <algorithm>
#include <utility>

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

const FleetRequest* FleetView::FindRequest(std::string_view uuid) const {
  auto it = request_by_uuid.find(std::string(uuid));
  return it == request_by_uuid.end() ? nullptr : FindRequestByNumber(it->second);
}

const FleetRequest* FleetView::FindRequestByNumber(uint64_t number) const {
  auto it = requests.find(number);
  return it == requests.end() ? nullptr : it->second.get();
}

struct FleetView::Rendered {
  std::once_flag once;
  std::shared_ptr<const std::string> body;
};

std::shared_ptr<const FleetAccelerator> HostDown(std::shared_ptr<const FleetAccelerator> published, int64_t since) {
  auto shown = std::make_shared<FleetAccelerator>(*published);
  shown->record.updated_at = since;  // a new mtime: the kernel drops what it kept of the old value
  HostFacts& facts = shown->record.facts;
  std::string said = facts.health;
  for (const std::string& reason : facts.health_reasons) said += "; " + reason;
  facts.health = "unknown";
  facts.health_reasons = {"host " + published->host + " is down (its lease ran out); it last said: " + said};
  shown->published = std::move(published);
  return shown;
}

void IndexFleetView(FleetView& view) {
  view.host_index.clear();
  view.host_by_number.clear();
  view.by_uuid.clear();
  for (size_t i = 0; i < view.hosts.size(); ++i) {
    view.host_index[view.hosts[i].name] = i;
    view.host_by_number[view.hosts[i].number] = i;
  }
  for (const auto& [number, a] : view.accelerators) view.by_uuid[a->record.uuid] = number;
  view.request_by_uuid.clear();
  for (const auto& [number, r] : view.requests) view.request_by_uuid[r->uuid] = number;
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
  View before;
  {
    std::lock_guard lock(mu_);
    before = std::exchange(current_, view);
  }
  for (const Listener& listener : listeners_) listener(*before, *view);
}

void FleetBoard::AddListener(Listener listener) { listeners_.push_back(std::move(listener)); }

bool FleetBoard::AwaitRead(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!wake_) return false;
  const uint64_t wanted = ++asked_;
  wake_();  // it only signals: the reader never takes mu_ while wake_ runs
  return read_ended_.wait_for(lock, timeout, [&] { return read_ >= wanted || !wake_; }) && read_ >= wanted;
}

void FleetBoard::SetReader(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  wake_ = std::move(wake);
  read_ended_.notify_all();
}

uint64_t FleetBoard::BeginRead() {
  std::lock_guard lock(mu_);
  return asked_;
}

void FleetBoard::EndRead(uint64_t ticket) {
  std::lock_guard lock(mu_);
  read_ = std::max(read_, ticket);
  read_ended_.notify_all();
}

}  // namespace cyborgfs
