#include "binder.h"

#include <spdlog/spdlog.h>

#include <set>
#include <sstream>

#include "timing.h"

namespace cyborgfs::fleet {
namespace {

// Requests left Initial (an INSERT in SQL): claimed here.
constexpr const char* kClaimLeftOver = R"sql(
    SELECT fleet_claim(q.uuid) FROM (SELECT uuid FROM fleet_requests WHERE state = 'Initial'
                                     ORDER BY created_at LIMIT 100 FOR UPDATE SKIP LOCKED) q
)sql";

// Claims no host bound in time ($1 seconds): failed, released.
constexpr const char* kFailLate = R"sql(
    WITH failed AS (
      UPDATE fleet_requests SET state = 'BindFailed', updated_at = now(), revision = nextval('fleet_revision'),
             error = format('not bound within %s s by host %s: is it down, or without --fleet?', $1, host)
      WHERE state = 'BindStarted' AND claimed_at < now() - make_interval(secs => $1::int)
      RETURNING uuid, host),
    released AS (DELETE FROM fleet_claims WHERE request IN (SELECT uuid FROM failed))
    SELECT uuid, host FROM failed
)sql";

// What this host ($1) has to do.
constexpr const char* kToDo = R"sql(
    SELECT r.uuid, r.state, r.instance_uuid,
           coalesce(string_agg(k.accelerator::text, ',' ORDER BY k.accelerator), '')
    FROM fleet_requests r LEFT JOIN fleet_claims k ON k.request = r.uuid
    WHERE r.host = $1 AND r.state IN ('BindStarted', 'Deleting', 'UnbindFailed')
    GROUP BY r.uuid ORDER BY min(r.claimed_at)
)sql";

std::vector<std::string> Split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Service::Request AsRequest(const std::string& uuid) {
  return Service::Request{Caller::FleetRequest(uuid), nullptr, "accelerator request " + uuid};
}

}  // namespace

Binder::Binder(Service& service, Options options) : service_(service), options_(std::move(options)) {}

Binder::~Binder() { Stop(); }

void Binder::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Binder::Stop() {
  stop_.Stop();
  if (thread_.joinable()) thread_.join();
}

void Binder::Run() {
  auto retry = std::chrono::milliseconds(kFirstRetry);
  std::string last_problem;
  while (!stop_.Stopping()) {
    bool served = false;
    Status why = Session(served);
    if (stop_.Stopping()) break;
    if (served) retry = kFirstRetry;
    if (why.message() != last_problem) spdlog::warn("fleet binder: {}; trying again soon", why.message());
    last_problem = why.message();
    stop_.Pause(Jittered(retry));
    retry = std::min<std::chrono::milliseconds>(retry * 2, kLastRetry);
  }
}

Status Binder::Session(bool& served) {
  auto db = Postgres::Connect(options_.conninfo, "cyborgfs " + options_.host + " (binder)");
  if (!db.ok()) return db.status();
  if (auto listening = (*db)->Exec("LISTEN cyborgfs_requests"); !listening.ok()) return listening.status();
  for (;;) {
    if (stop_.Stopping()) return Status::Ok();
    if (Status s = Round(**db); !s.ok()) return s;
    served = true;
    auto woken = (*db)->AwaitNotifications(stop_.fd(), kPollEvery);
    if (!woken.ok()) return woken.status();
  }
}

Status Binder::Round(Postgres& db) {
  if (auto claimed = db.Exec(kClaimLeftOver); !claimed.ok()) return claimed.status();
  auto late = db.Exec(kFailLate, {std::to_string(options_.bind_timeout.count())});
  if (!late.ok()) return late.status();
  for (const Row& row : *late) {
    spdlog::warn("fleet: accelerator request {} not bound within {} s by host {}: BindFailed, released",
                 row[0].value_or(""), options_.bind_timeout.count(), row[1].value_or(""));
  }
  if (Status s = ReleaseStrays(db); !s.ok()) return s;
  auto todo = db.Exec(kToDo, {options_.host});
  if (!todo.ok()) return todo.status();
  for (const Row& row : *todo) {
    if (stop_.Stopping()) return Status::Ok();
    ToDo request{row[0].value_or(""), row[1].value_or(""), row[2].value_or(""), Split(row[3].value_or(""))};
    Status done = request.state == "BindStarted" ? Bind(db, request) : Unbind(db, request);
    if (!done.ok()) return done;
  }
  return Status::Ok();
}

// Only this thread makes holds (Bind), so what it reads of them here cannot
// be newer than the claims it reads next.
Status Binder::ReleaseStrays(Postgres& db) {
  std::vector<Service::Snapshot> held;
  for (const Service::Snapshot& a : service_.List()) {
    if (!a->held_by.empty()) held.push_back(a);
  }
  if (held.empty()) return Status::Ok();
  auto claims = db.Exec("SELECT accelerator::text, request::text FROM fleet_claims WHERE host = $1", {options_.host});
  if (!claims.ok()) return claims.status();
  std::set<std::pair<std::string, std::string>> claimed;
  for (const Row& row : *claims) claimed.emplace(row[0].value_or(""), row[1].value_or(""));
  for (const Service::Snapshot& a : held) {
    if (claimed.count({a->uuid, a->held_by})) continue;
    auto released = service_.Detach(a->id, AsRequest(a->held_by));
    spdlog::warn("fleet: accelerator {} was held by request {}, which no longer holds it: {}", a->uuid, a->held_by,
                 released.ok() ? "detached" : "detaching it failed: " + released.status().message());
  }
  return Status::Ok();
}

std::string Binder::DetachAll(const ToDo& request, const std::vector<std::string>& accelerators) {
  std::string failed;
  for (const std::string& uuid : accelerators) {
    Service::Snapshot a = service_.FindByUuid(uuid);
    // Only what the request has: an attachment to another target is someone else's.
    if (!a || a->attachment != "vm " + request.instance) continue;
    auto detached = service_.Detach(a->id, AsRequest(request.uuid));
    if (!detached.ok() && failed.empty()) failed = detached.status().message();
  }
  return failed;
}

Status Binder::Bind(Postgres& db, const ToDo& request) {
  std::vector<std::pair<std::string, std::string>> handles;  // accelerator, attach handle
  std::vector<std::string> attached;
  std::string why;
  for (const std::string& uuid : request.accelerators) {
    Service::Snapshot a = service_.FindByUuid(uuid);
    if (!a) {
      why = "accelerator " + uuid + " is not on host " + options_.host + " any more";
      break;
    }
    AttachTarget target{AttachTarget::Kind::kVm, request.instance};
    auto done = service_.Attach(a->id, target, std::nullopt, AsRequest(request.uuid));
    if (!done.ok()) {
      why = (done.status().code() == Code::kBusy ? "conflict: " : "") + done.status().message();
      break;
    }
    attached.push_back(uuid);
    handles.emplace_back(uuid, done->after->attach_handle);
  }
  if (request.accelerators.empty()) why = "the request holds no accelerator";
  if (!why.empty()) {
    if (std::string undo = DetachAll(request, attached); !undo.empty()) why += "; undoing it failed: " + undo;
    Transaction t(db);
    if (Status s = t.Begin(); !s.ok()) return s;
    auto failed = db.Exec(
        "UPDATE fleet_requests SET state = 'BindFailed', error = $2, updated_at = now(), "
        "revision = nextval('fleet_revision') WHERE uuid = $1 AND state = 'BindStarted' RETURNING uuid",
        {request.uuid, why});
    if (!failed.ok()) return failed.status();
    if (!failed->empty()) {
      if (auto released = db.Exec("DELETE FROM fleet_claims WHERE request = $1", {request.uuid}); !released.ok()) {
        return released.status();
      }
    }
    if (Status s = t.Commit(); !s.ok()) return s;
    spdlog::warn("fleet: accelerator request {}: BindFailed: {}", request.uuid, why);
    return Status::Ok();
  }
  Transaction t(db);
  if (Status s = t.Begin(); !s.ok()) return s;
  auto bound = db.Exec(
      "UPDATE fleet_requests SET state = 'Bound', error = '', updated_at = now(), "
      "revision = nextval('fleet_revision') WHERE uuid = $1 AND state = 'BindStarted' RETURNING uuid",
      {request.uuid});
  if (!bound.ok()) return bound.status();
  for (const auto& [uuid, handle] : handles) {
    if (bound->empty()) break;
    auto set = db.Exec("UPDATE fleet_claims SET attach_handle = $2 WHERE accelerator = $1 AND request = $3",
                       {uuid, handle, request.uuid});
    if (!set.ok()) return set.status();
  }
  if (Status s = t.Commit(); !s.ok()) return s;
  if (!bound->empty()) {
    spdlog::info("fleet: accelerator request {}: Bound to vm {}", request.uuid, request.instance);
    return Status::Ok();
  }
  // Not BindStarted any more: failed by the timeout, or deleted meanwhile.
  auto now = db.Exec("SELECT state FROM fleet_requests WHERE uuid = $1", {request.uuid});
  if (!now.ok()) return now.status();
  const std::string state = now->empty() ? "" : now->front()[0].value_or("");
  if (state != "Deleting" && state != "UnbindFailed") {  // Deleting: the next round detaches
    spdlog::warn("fleet: accelerator request {} is {} meanwhile: its attach undone", request.uuid,
                 state.empty() ? "gone" : state);
    (void)DetachAll(request, attached);
  }
  return Status::Ok();
}

Status Binder::Unbind(Postgres& db, const ToDo& request) {
  const std::string failed = DetachAll(request, request.accelerators);
  if (!failed.empty()) {
    auto noted = db.Exec(
        "UPDATE fleet_requests SET state = 'UnbindFailed', error = $2, updated_at = now(), "
        "revision = nextval('fleet_revision') WHERE uuid = $1 AND state IN ('Deleting', 'UnbindFailed') "
        "AND (state, error) IS DISTINCT FROM ('UnbindFailed', $2) RETURNING uuid",
        {request.uuid, failed});
    if (!noted.ok()) return noted.status();
    if (!noted->empty()) spdlog::warn("fleet: accelerator request {}: UnbindFailed: {}", request.uuid, failed);
    return Status::Ok();
  }
  auto gone =
      db.Exec("DELETE FROM fleet_requests WHERE uuid = $1 AND state IN ('Deleting', 'UnbindFailed')", {request.uuid});
  if (!gone.ok()) return gone.status();
  spdlog::info("fleet: accelerator request {}: unbound and deleted", request.uuid);
  return Status::Ok();
}

}  // namespace cyborgfs::fleet
