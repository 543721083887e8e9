#include "fleet_reader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "cyborgfs/records.h"
#include "postgres.h"
#include "requests.h"
#include "timing.h"

namespace cyborgfs::fleet {
namespace {

// The hosts, each with its lease judged on the server's clock and the
// highest revision of its rows.
constexpr const char* kHosts = R"sql(
    SELECT h.name, extract(epoch FROM h.lease_expires_at)::bigint, h.lease_expires_at > now(),
           coalesce((SELECT max(a.revision) FROM fleet_accelerators a WHERE a.host = h.name), 0)
    FROM fleet_hosts h
    )sql";

// The rows of hosts $1 past revisions $2 (arrays of one length).
constexpr const char* kChangedRows = R"sql(
    SELECT a.uuid::text, a.host, a.revision, a.removed, a.record::text
    FROM fleet_accelerators a JOIN unnest($1::text[], $2::bigint[]) AS k(host, after)
      ON a.host = k.host AND a.revision > k.after
    )sql";

constexpr const char* kAllRows = R"sql(
    SELECT a.uuid::text, a.host, a.revision, a.removed, a.record::text FROM fleet_accelerators a WHERE NOT a.removed
    )sql";

// Whether any request came, changed or went: a fingerprint of every (uuid,
// revision) (a revision moves at every change of a request: schema 4's
// trigger). Only when it moved are the requests listed, and only those new
// or changed read whole.
constexpr const char* kRequestsFingerprint = R"sql(
    SELECT count(*) || '/' || coalesce(sum(hashtextextended(uuid::text || '/' || revision, 0)::numeric), 0)
    FROM fleet_requests
    )sql";
constexpr const char* kRequestRevisions = "SELECT uuid::text, revision FROM fleet_requests";

// A PostgreSQL array literal of `items` (text elements quoted).
std::string ArrayOf(const std::vector<std::string>& items, bool quoted) {
  std::string out = "{";
  for (const std::string& item : items) {
    if (out.size() > 1) out += ',';
    if (!quoted) {
      out += item;
      continue;
    }
    out += '"';
    for (char c : item) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

}  // namespace

FleetReader::FleetReader(Service& service, FleetBoard& board, Options options)
    : board_(board), options_(std::move(options)), server_(Postgres::Describe(options_.conninfo)) {
  service.AddReport("fleet_view", [this] { return Report(); });
}

FleetReader::~FleetReader() { Stop(); }

void FleetReader::Start() {
  board_.SetReader([this] { stop_.Wake(); });
  {
    std::lock_guard lock(mu_);
    problem_ = "not read yet";
    failing_since_ = UnixNow();
  }
  thread_ = std::thread([this] { Run(); });
}

void FleetReader::Stop() {
  board_.SetReader(nullptr);
  stop_.Stop();
  if (thread_.joinable()) thread_.join();
}

Json FleetReader::Report() const {
  const FleetBoard::View view = board_.Current();
  std::lock_guard lock(mu_);
  Json problems = Json::array();
  if (!problem_.empty()) {
    problems.push_back("PostgreSQL unreadable since " + UtcTime(failing_since_) + ": the fleet view is " +
                       (read_at_ ? "as read at " + UtcTime(read_at_) : std::string("empty")) + " (" + problem_ + ")");
  }
  return Json{{"state", problem_.empty() ? "ok" : "degraded"},
              {"server", server_},
              {"hosts", view->hosts.size()},
              {"accelerators", view->accelerators.size()},
              {"revision", view->revision},
              {"read_at", read_at_ ? Json(read_at_) : Json(nullptr)},
              {"problems", problems}};
}

uint64_t FleetReader::Number(std::unordered_map<std::string, uint64_t>& numbers, const std::string& key) {
  auto [it, added] = numbers.emplace(key, 0);
  if (added) it->second = next_number_++;
  return it->second;
}

void FleetReader::Run() {
  auto retry = std::chrono::milliseconds(kFirstRetry);
  std::string last_problem;
  while (!stop_.Stopping()) {
    const int64_t read_before = [&] {
      std::lock_guard lock(mu_);
      return read_at_;
    }();
    Status why = Session();
    if (stop_.Stopping()) break;
    {
      std::lock_guard lock(mu_);
      if (read_at_ != read_before) retry = kFirstRetry;  // it worked for a while
      problem_ = why.message();
      if (!failing_since_) failing_since_ = UnixNow();
    }
    if (why.message() != last_problem) spdlog::warn("fleet view: {}; reading again soon", why.message());
    last_problem = why.message();
    stop_.Pause(Jittered(retry));
    retry = std::min<std::chrono::milliseconds>(retry * 2, kLastRetry);
  }
}

Status FleetReader::Session() {
  auto db = Postgres::Connect(options_.conninfo, "cyborgfs " + options_.host + " (fleet view)");
  if (!db.ok()) return db.status();
  if (auto listening = (*db)->Exec("LISTEN cyborgfs_fleet"); !listening.ok()) return listening.status();
  auto next_reload = std::chrono::steady_clock::now();
  for (;;) {
    if (stop_.Stopping()) return Status::Ok();
    const bool whole = std::chrono::steady_clock::now() >= next_reload;
    stop_.Drain();  // a wake from now on asks for the next read
    const uint64_t ticket = board_.BeginRead();
    const Status read = Read(**db, whole);
    board_.EndRead(ticket);
    if (!read.ok()) return read;
    if (whole) next_reload = std::chrono::steady_clock::now() + kReloadEvery;
    {
      std::lock_guard lock(mu_);
      if (!problem_.empty()) spdlog::info("fleet view: reading the fleet from PostgreSQL ({})", server_);
      problem_.clear();
      failing_since_ = 0;
      read_at_ = UnixNow();
    }
    // Woken by a publication (or a stop), or at the next poll; those that
    // come meanwhile are read with it.
    const auto read_at = std::chrono::steady_clock::now();
    auto woken = (*db)->AwaitNotifications(stop_.fd(), kPollEvery);
    if (!woken.ok()) return woken.status();
    const auto early = read_at + kReadAtMostEvery - std::chrono::steady_clock::now();
    if (early.count() > 0) stop_.Pause(std::chrono::ceil<std::chrono::milliseconds>(early));
  }
}

Status FleetReader::Read(Postgres& db, bool whole) {
  const auto began = std::chrono::steady_clock::now();
  const FleetBoard::View old = board_.Current();
  Transaction t(db);
  if (auto begun = db.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); !begun.ok()) return begun.status();
  auto hosts = db.Exec(kHosts);
  if (!hosts.ok()) return hosts.status();
  std::vector<std::string> stale_hosts, after;
  std::map<std::string, int64_t> highest;
  for (const Row& row : *hosts) {
    const std::string name = row[0].value_or("");
    const int64_t revision = std::stoll(row[3].value_or("0"));
    highest[name] = revision;
    auto known = read_up_to_.find(name);
    if (!whole && (known == read_up_to_.end() || known->second < revision)) {
      stale_hosts.push_back(name);
      after.push_back(std::to_string(known == read_up_to_.end() ? 0 : known->second));
    }
  }
  Result<std::vector<Row>> rows = std::vector<Row>();
  if (whole) {
    rows = db.Exec(kAllRows);
  } else if (!stale_hosts.empty()) {
    rows = db.Exec(kChangedRows, {ArrayOf(stale_hosts, true), ArrayOf(after, false)});
  }
  if (!rows.ok()) return rows.status();
  auto fingerprint = db.Exec(kRequestsFingerprint);
  if (!fingerprint.ok()) return fingerprint.status();
  const std::string requests_fingerprint = fingerprint->front()[0].value_or("");
  std::optional<std::vector<Row>> request_revisions;  // read when the fingerprint moved
  Result<std::vector<Row>> request_rows = std::vector<Row>();
  if (whole || requests_fingerprint != requests_fingerprint_) {
    auto listed = db.Exec(kRequestRevisions);
    if (!listed.ok()) return listed.status();
    std::vector<std::string> changed;
    for (const Row& row : *listed) {
      const FleetRequest* before = old->FindRequest(row[0].value_or(""));
      if (!before || before->revision != std::stoll(row[1].value_or("0"))) changed.push_back(row[0].value_or(""));
    }
    if (!changed.empty()) {
      request_rows =
          db.Exec(std::string(Requests::kSelect) + " WHERE r.uuid = ANY($1::uuid[])", {ArrayOf(changed, true)});
      if (!request_rows.ok()) return request_rows.status();
    }
    request_revisions = std::move(*listed);
  }
  (void)t.Commit();  // a read-only snapshot: nothing to keep

  // The new view: the old one's accelerators (none if whole), the rows read over them.
  FleetView next;
  bool names_changed = false, changed = false;
  if (!whole) next.accelerators = old->accelerators;
  for (const Row& row : *rows) {
    const std::string uuid = row[0].value_or(""), host = row[1].value_or("");
    const int64_t revision = std::stoll(row[2].value_or("0"));
    const bool removed = row[3].value_or("f") == "t";
    const uint64_t number = Number(uuid_numbers_, uuid);
    if (removed) {
      names_changed |= next.accelerators.erase(number) != 0;
      continue;
    }
    const FleetAccelerator* before = old->FindByNumber(number);
    if (before && before->revision == revision && before->host == host) {
      next.accelerators[number] = old->accelerators.at(number);
      continue;
    }
    Result<Accelerator> record = Status::Invalid("not JSON");
    try {
      record = AcceleratorFromRecord(Json::parse(row[4].value_or("")));
    } catch (const Json::exception& e) {
      record = Status::Invalid(e.what());
    }
    if (!record.ok() || record->uuid != uuid) {
      if (refused_[uuid] != revision) {
        spdlog::warn("fleet view: host {} published accelerator {} (revision {}) with a record it cannot show: {}",
                     host, uuid, revision, record.ok() ? "its uuid is not the row's" : record.status().message());
      }
      refused_[uuid] = revision;
      continue;
    }
    auto a = std::make_shared<FleetAccelerator>();
    a->number = number;
    a->host = host;
    a->revision = revision;
    a->record = std::move(*record);
    names_changed |= !before;
    changed = true;
    next.accelerators[number] = std::move(a);
  }
  // The hosts, by number; the accelerators of a host no longer there go.
  std::map<uint64_t, FleetHost> by_number;
  for (const Row& row : *hosts) {
    FleetHost h;
    h.name = row[0].value_or("");
    h.number = Number(host_numbers_, h.name);
    h.lease_expires_at = std::stoll(row[1].value_or("0"));
    h.up = row[2].value_or("f") == "t";
    const FleetHost* was = old->Host(h.name);
    h.status_since = was ? was->status_since : UnixNow();
    h.status_changes = was ? was->status_changes : 0;
    if (!was) names_changed = true;
    if (was && was->up != h.up) {
      h.status_since = UnixNow();
      ++h.status_changes;
      spdlog::info("fleet view: host {} is {} (its lease {} at {} on the server's clock)", h.name, h.up ? "up" : "down",
                   h.up ? "runs until" : "ran out", h.lease_expires_at);
    }
    changed |= !was || was->up != h.up || was->lease_expires_at != h.lease_expires_at;
    by_number.emplace(h.number, std::move(h));
  }
  names_changed |= by_number.size() != old->hosts.size();
  for (auto it = next.accelerators.begin(); it != next.accelerators.end();) {
    auto host = host_numbers_.find(it->second->host);
    if (host == host_numbers_.end() || !by_number.count(host->second)) {
      names_changed = true;
      it = next.accelerators.erase(it);
      continue;
    }
    FleetHost& h = by_number[host->second];
    if (!h.up && !it->second->published) {
      it->second = HostDown(it->second, h.status_since);
    } else if (h.up && it->second->published) {
      it->second = it->second->published;  // its own word again
    }
    h.accelerators.push_back(it->second);
    ++it;
  }
  // The requests: the old ones still at their revision, those read over them.
  if (request_revisions) {
    std::unordered_map<std::string, const Row*> read;
    for (const Row& row : *request_rows) read[row[0].value_or("")] = &row;
    for (const Row& row : *request_revisions) {
      const std::string uuid = row[0].value_or("");
      const uint64_t number = Number(request_numbers_, uuid);
      auto fresh = read.find(uuid);
      if (fresh == read.end()) {  // unchanged
        next.requests[number] = old->requests.at(number);
        continue;
      }
      auto r = std::make_shared<FleetRequest>();
      r->number = number;
      r->uuid = uuid;
      r->revision = std::stoll(row[1].value_or("0"));
      r->record = Requests::FromRow(*fresh->second);
      names_changed |= !old->FindRequestByNumber(number);
      changed = true;
      next.requests[number] = std::move(r);
    }
    for (const auto& [number, r] : old->requests) {  // gone: its number is not needed again (nor reused)
      if (!next.requests.count(number)) {
        request_numbers_.erase(r->uuid);
        names_changed = true;
      }
    }
  } else {
    next.requests = old->requests;
  }
  requests_fingerprint_ = requests_fingerprint;
  read_up_to_ = std::move(highest);
  if (!changed && !names_changed && next.accelerators.size() == old->accelerators.size()) return Status::Ok();
  for (auto& [number, h] : by_number) next.hosts.push_back(std::move(h));
  next.revision = old->revision + 1;
  next.names_revision = old->names_revision + (names_changed ? 1 : 0);
  next.read_at = UnixNow();
  IndexFleetView(next);
  board_.Publish(std::make_shared<const FleetView>(std::move(next)));
  spdlog::debug("fleet view: revision {}: {} rows of {} hosts read in {:.2f} ms", old->revision + 1, rows->size(),
                hosts->size(),
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count());
  return Status::Ok();
}

}  // namespace cyborgfs::fleet
