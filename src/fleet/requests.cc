#include "requests.h"

#include <spdlog/spdlog.h>

#include "cyborgfs/audit.h"
#include "postgres.h"

namespace cyborgfs::fleet {
namespace {

constexpr size_t kPoolSize = 4;  // connections kept idle at most

Status BadBody(const std::string& why) { return Status::Invalid("accelerator request: " + why); }

// The request's columns from a POST body; kInvalid naming what is wrong.
Result<std::vector<Param>> Columns(const Json& body) {
  if (!body.is_object()) return BadBody("the body must be a JSON object");
  for (const auto& [key, value] : body.items()) {
    if (key != "uuid" && key != "device_type" && key != "instance_uuid" && key != "host" && key != "match" &&
        key != "count") {
      return BadBody("unknown member \"" + key + "\" (known: uuid, device_type, instance_uuid, host, match, count)");
    }
  }
  std::string uuid = RandomUuid();
  if (body.contains("uuid")) {
    auto given = body["uuid"].is_string() ? NormalizeUuid(body["uuid"].get<std::string>()) : std::nullopt;
    if (!given) return BadBody("\"uuid\" must be a uuid");
    uuid = *given;
  }
  if (!body.contains("device_type") || !body["device_type"].is_string() ||
      body["device_type"].get<std::string>().empty() || body["device_type"].get<std::string>().size() > 64) {
    return BadBody("\"device_type\" must be a non-empty string (GPU, FPGA, ...)");
  }
  auto instance = body.contains("instance_uuid") && body["instance_uuid"].is_string()
                      ? NormalizeUuid(body["instance_uuid"].get<std::string>())
                      : std::nullopt;
  if (!instance) return BadBody("\"instance_uuid\" must be the uuid of the VM the accelerators are for");
  Param host;
  if (body.contains("host")) {
    if (!body["host"].is_string() || body["host"].get<std::string>().empty()) {
      return BadBody("\"host\" must be a host's name");
    }
    host = body["host"].get<std::string>();
  }
  Json match = Json::object();
  if (body.contains("match")) {
    if (!body["match"].is_object()) return BadBody("\"match\" must be an object of values to match");
    for (const auto& [key, value] : body["match"].items()) {
      if (!value.is_primitive() || value.is_null()) {
        return BadBody("\"match\": \"" + key + "\" must be a string, a number or a boolean");
      }
      match[key] = value.is_string() ? value.get<std::string>() : value.dump();
    }
  }
  int64_t count = 1;
  if (body.contains("count")) {
    if (!body["count"].is_number_integer() || body["count"].get<int64_t>() < 1 || body["count"].get<int64_t>() > 64) {
      return BadBody("\"count\" must be a whole number from 1 to 64");
    }
    count = body["count"].get<int64_t>();
  }
  return std::vector<Param>{uuid, *instance,    body["device_type"].get<std::string>(),
                            host, match.dump(), std::to_string(count)};
}

Json Nullable(const std::optional<std::string>& text) { return text ? Json(*text) : Json(nullptr); }

}  // namespace

const char* const Requests::kSelect = R"sql(
    SELECT r.uuid, r.state, r.instance_uuid, r.device_type, r.wanted_host, r.match, r.count, r.host, r.error,
           extract(epoch FROM r.created_at)::bigint, extract(epoch FROM r.updated_at)::bigint,
           coalesce((SELECT json_agg(json_build_object('accelerator', k.accelerator,
                                                       'attach_handle', k.attach_handle) ORDER BY k.accelerator)
                     FROM fleet_claims k WHERE k.request = r.uuid), '[]')
    FROM fleet_requests r
)sql";

Json Requests::FromRow(const std::vector<std::optional<std::string>>& row) {
  Json held = Json::parse(row[11].value_or("[]"), nullptr, false);
  if (!held.is_array()) held = Json::array();
  Json accelerators = Json::array(), handles = Json::array();
  for (Json& claim : held) {
    accelerators.push_back(claim["accelerator"]);
    if (row[1] != "Bound") continue;  // the handles are the bind's
    const std::string text = claim["attach_handle"].is_string() ? claim["attach_handle"].get<std::string>() : "";
    Json handle = text.empty() ? Json::object() : Json::parse(text, nullptr, false);  // "": no driver
    handles.push_back(
        {{"accelerator", claim["accelerator"]}, {"attach_handle", handle.is_discarded() ? Json(text) : handle}});
  }
  Json match = Json::parse(row[5].value_or("{}"), nullptr, false);
  return Json{{"uuid", Nullable(row[0])},
              {"state", Nullable(row[1])},
              {"instance_uuid", Nullable(row[2])},
              {"device_type", Nullable(row[3])},
              {"wanted_host", Nullable(row[4])},
              {"match", match.is_discarded() ? Json::object() : match},
              {"count", std::stoll(row[6].value_or("1"))},
              {"host", Nullable(row[7])},
              {"accelerators", accelerators},
              {"attach_handles", handles},
              {"attach_handle", handles.empty() ? Json(nullptr) : handles[0]["attach_handle"]},
              {"error", row[8].value_or("")},
              {"created_at", std::stoll(row[9].value_or("0"))},
              {"updated_at", std::stoll(row[10].value_or("0"))}};
}

Requests::Requests(std::string conninfo, std::string host) : conninfo_(std::move(conninfo)), host_(std::move(host)) {}
Requests::~Requests() = default;

Result<std::unique_ptr<Postgres>> Requests::Take() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto db = std::move(idle_.back());
      idle_.pop_back();
      return db;
    }
  }
  return Postgres::Connect(conninfo_, "cyborgfs " + host_ + " (requests)");
}

void Requests::Give(std::unique_ptr<Postgres> db) {
  if (db->Broken()) return;
  std::lock_guard lock(mu_);
  if (idle_.size() < kPoolSize) idle_.push_back(std::move(db));
}

template <typename T, typename Call>
Result<T> Requests::With(Call call) {
  auto db = Take();
  if (!db.ok()) return Status::Unavailable("the fleet's PostgreSQL cannot be reached: " + db.status().message());
  Result<T> done = call(**db);
  const bool broken = (*db)->Broken();
  Give(std::move(*db));
  if (!done.ok() && done.status().code() == Code::kIoError) {
    spdlog::warn("fleet requests: {}", done.status().message());
    return Status::Unavailable(
        std::string(broken ? "the connection to the fleet's PostgreSQL broke: " : "the fleet's PostgreSQL failed: ") +
        done.status().message());
  }
  return done;
}

Result<Json> Requests::Create(const Json& body, Taken taken, const Caller& who) {
  auto columns = Columns(body);
  if (!columns.ok()) {
    const Json* named = body.is_object() && body.contains("uuid") ? &body["uuid"] : nullptr;
    audit::RequestRefused(who, named && named->is_string() ? named->get<std::string>() : "", "create",
                          columns.status());
    return columns.status();
  }
  const std::string uuid = *(*columns)[0];
  bool made = false;  // not the same request again
  auto request = With<Json>([&](Postgres& db) -> Result<Json> {
    Transaction t(db);
    if (Status s = t.Begin(); !s.ok()) return s;
    auto inserted = db.Exec(
        "INSERT INTO fleet_requests (uuid, instance_uuid, device_type, wanted_host, match, count) "
        "VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT (uuid) DO NOTHING RETURNING uuid",
        *columns);
    if (!inserted.ok()) return inserted.status();
    if (inserted->empty()) {
      if (taken == Taken::kSameIsDone) {
        auto same = db.Exec(std::string(kSelect) +
                                " WHERE r.uuid = $1 AND r.instance_uuid = $2 AND r.device_type = $3 AND "
                                "r.wanted_host IS NOT DISTINCT FROM $4 AND r.match = $5::jsonb AND r.count = $6",
                            *columns);
        if (!same.ok()) return same.status();
        if (!same->empty()) return FromRow(same->front());
      }
      return Status::Exists("accelerator request: the uuid " + uuid + " is taken");
    }
    if (auto claimed = db.Exec("SELECT fleet_claim($1)", {uuid}); !claimed.ok()) return claimed.status();
    auto rows = db.Exec(std::string(kSelect) + " WHERE r.uuid = $1", {uuid});  // as the claim left it
    if (!rows.ok()) return rows.status();
    if (Status s = t.Commit(); !s.ok()) return s;
    made = true;
    return FromRow(rows->front());
  });
  if (!request.ok()) {
    audit::RequestRefused(who, uuid, "create", request.status());
  } else if (made) {
    const std::string state = (*request)["state"].get<std::string>();
    spdlog::info("fleet: accelerator request {} made: {}", uuid, state);
    audit::RequestChanged(who, uuid, "create", state);
  }
  return request;
}

Result<Json> Requests::Get(const std::string& uuid) {
  auto canonical = NormalizeUuid(uuid);
  if (!canonical) return Status::NotFound("no accelerator request has the uuid " + uuid);
  return With<Json>([&](Postgres& db) -> Result<Json> {
    auto rows = db.Exec(std::string(kSelect) + " WHERE r.uuid = $1", {*canonical});
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return Status::NotFound("no accelerator request has the uuid " + *canonical);
    return FromRow(rows->front());
  });
}

Result<Json> Requests::List(const std::optional<std::string>& instance) {
  std::optional<std::string> canonical;
  if (instance) {
    canonical = NormalizeUuid(*instance);
    if (!canonical) return Status::Invalid("instance: \"" + *instance + "\" is not a uuid");
  }
  return With<Json>([&](Postgres& db) -> Result<Json> {
    auto rows = canonical ? db.Exec(std::string(kSelect) + " WHERE r.instance_uuid = $1 ORDER BY r.created_at, r.uuid",
                                    {*canonical})
                          : db.Exec(std::string(kSelect) + " ORDER BY r.created_at, r.uuid");
    if (!rows.ok()) return rows.status();
    Json arqs = Json::array();
    for (const auto& row : *rows) arqs.push_back(FromRow(row));
    return Json{{"arqs", arqs}};
  });
}

Status Requests::Delete(const std::string& uuid, const Caller& who) {
  auto canonical = NormalizeUuid(uuid);
  if (!canonical) {
    const Status why = Status::NotFound("no accelerator request has the uuid " + uuid);
    audit::RequestRefused(who, uuid, "delete", why);
    return why;
  }
  // What it is left in: "" gone, "Deleting" while its host detaches.
  Result<std::string> done = With<std::string>([&](Postgres& db) -> Result<std::string> {
    Transaction t(db);
    if (Status s = t.Begin(); !s.ok()) return s;
    auto rows = db.Exec("SELECT state, host FROM fleet_requests WHERE uuid = $1 FOR UPDATE", {*canonical});
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return Status::NotFound("no accelerator request has the uuid " + *canonical);
    const std::string state = rows->front()[0].value_or("");
    Result<std::vector<Row>> changed = std::vector<Row>{};
    std::string left = "Deleting";
    if (state == "Initial" || state == "BindFailed") {  // it holds nothing
      changed = db.Exec("DELETE FROM fleet_requests WHERE uuid = $1", {*canonical});
      left = "";
    } else if (state != "Deleting") {
      changed = db.Exec(
          "UPDATE fleet_requests SET state = 'Deleting', updated_at = now(), revision = nextval('fleet_revision') "
          "WHERE uuid = $1",
          {*canonical});
      if (changed.ok()) changed = db.Exec("SELECT pg_notify('cyborgfs_requests', $1)", {rows->front()[1]});
    }
    if (!changed.ok()) return changed.status();
    if (Status s = t.Commit(); !s.ok()) return s;
    return left;
  });
  if (!done.ok()) {
    audit::RequestRefused(who, *canonical, "delete", done.status());
    return done.status();
  }
  spdlog::info("fleet: accelerator request {} deleted", *canonical);
  audit::RequestChanged(who, *canonical, "delete", *done);
  return Status::Ok();
}

}  // namespace cyborgfs::fleet
