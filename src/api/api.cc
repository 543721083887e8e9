#include "api.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <strings.h>

#include <algorithm>

#include "cyborgfs/audit.h"
#include "cyborgfs/records.h"
#include "metrics.h"

namespace cyborgfs::api {
namespace {

// The path's segments ("/accelerators/x/" is accelerators, x); an empty
// segment in the middle is kept, and matches no route.
std::vector<std::string> Segments(const std::string& path) {
  std::vector<std::string> segments;
  if (path.empty() || path[0] != '/') return {""};
  std::string_view rest(path);
  rest.remove_prefix(1);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty()) return segments;
  for (size_t at = 0;;) {
    const size_t slash = rest.find('/', at);
    segments.emplace_back(rest.substr(at, slash == std::string_view::npos ? std::string_view::npos : slash - at));
    if (slash == std::string_view::npos) break;
    at = slash + 1;
  }
  return segments;
}

// `segments` matched by `pattern`; the segments "{x}" took, in order.
bool Matches(const std::vector<std::string_view>& pattern, const std::vector<std::string>& segments,
             std::vector<std::string>& args) {
  if (pattern.size() != segments.size()) return false;
  args.clear();
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i].front() == '{') {
      if (segments[i].empty()) return false;
      args.push_back(segments[i]);
    } else if (pattern[i] != segments[i]) {
      return false;
    }
  }
  return true;
}

// Whether `shown` is `token`, in a time that does not tell how much of it is.
bool ConstantTimeEqual(std::string_view shown, std::string_view token) {
  if (token.empty()) return false;
  unsigned differ = shown.size() != token.size();
  for (size_t i = 0; i < shown.size() && i < token.size(); ++i)
    differ |= static_cast<unsigned char>(shown[i] ^ token[i]);
  return differ == 0;
}

std::string ETagOf(const Accelerator& a) { return "\"" + std::to_string(a.generation) + "\""; }

// The generation an If-Match header names: nullopt for none or "*"; kInvalid
// for what is not one strong entity tag of a generation.
Result<std::optional<int64_t>> ExpectedGeneration(const httplib::Request& req) {
  if (!req.has_header("If-Match")) return std::optional<int64_t>();
  const std::string header = req.get_header_value("If-Match");
  const std::string_view value = TrimSpaces(header);
  if (value == "*") return std::optional<int64_t>();
  const auto bad =
      Status::Invalid("If-Match: expected the accelerator's ETag, \"<generation>\" (or *), not " + std::string(value));
  if (value.size() < 3 || value.front() != '"' || value.back() != '"' || value.size() > 20) return bad;
  int64_t generation = 0;
  for (char c : value.substr(1, value.size() - 2)) {
    if (c < '0' || c > '9') return bad;
    generation = generation * 10 + (c - '0');
  }
  return std::optional<int64_t>(generation);
}

bool NoneMatch(const httplib::Request& req, const std::string& etag) {
  if (!req.has_header("If-None-Match")) return false;
  const std::string value = req.get_header_value("If-None-Match");
  if (TrimSpaces(value) == "*") return true;
  for (size_t at = 0; at <= value.size();) {
    size_t comma = value.find(',', at);
    if (comma == std::string::npos) comma = value.size();
    std::string_view tag = TrimSpaces(std::string_view(value).substr(at, comma - at));
    if (tag.rfind("W/", 0) == 0) tag.remove_prefix(2);  // a weak comparison, as GET allows
    if (tag == etag) return true;
    at = comma + 1;
  }
  return false;
}

}  // namespace

struct Api::Call {
  const Peer& peer;
  const httplib::Request& req;
  httplib::Response& res;
  std::vector<std::string> args;  // what the route's {x} segments took
};

Api::Api(Service& service, Options options)
    : service_(service),
      options_(std::move(options)),
      routes_({
          {"GET", {"accelerators"}, &Api::List, false},
          {"POST", {"accelerators"}, &Api::Create, true},
          {"GET", {"accelerators", "by-name", "{name}"}, &Api::GetByName, false},
          {"GET", {"accelerators", "{uuid}"}, &Api::Get, false},
          {"POST", {"accelerators", "{uuid}"}, &Api::Create, true},
          {"PUT", {"accelerators", "{uuid}"}, &Api::Attach, true},
          {"DELETE", {"accelerators", "{uuid}"}, &Api::Detach, true},
          {"PUT", {"accelerators", "{uuid}", "acc_specs"}, &Api::SetSpec, true},
          {"PUT", {"accelerators", "{uuid}", "acc_spec"}, &Api::SetSpec, true},
          {"PUT", {"accelerators", "{uuid}", "name"}, &Api::Rename, true},
          {"DELETE", {"accelerators", "{uuid}", "record"}, &Api::Remove, true},
          {"POST", {"accelerators", "{uuid}", "disable"}, &Api::Disable, true},
          {"POST", {"accelerators", "{uuid}", "enable"}, &Api::Enable, true},
          {"POST", {"rescan"}, &Api::Rescan, true},
          {"GET", {"drivers"}, &Api::Drivers, false},
          {"GET", {"metrics"}, &Api::Metrics, false},
          {"GET", {"fleet", "hosts"}, &Api::ListFleetHosts, false},
          {"GET", {"fleet", "hosts", "{name}"}, &Api::GetFleetHost, false},
          {"GET", {"fleet", "accelerators"}, &Api::ListFleet, false},
          {"GET", {"fleet", "accelerators", "{uuid}"}, &Api::GetFleetAccelerator, false},
          {"POST", {"fleet", "accelerator_requests"}, &Api::CreateRequest, true},
          {"GET", {"fleet", "accelerator_requests"}, &Api::ListRequests, false},
          {"GET", {"fleet", "accelerator_requests", "{uuid}"}, &Api::GetRequest, false},
          {"DELETE", {"fleet", "accelerator_requests", "{uuid}"}, &Api::DeleteRequest, true},
      }) {}

int Api::HttpStatus(Code code) {
  switch (code) {
    case Code::kOk:
      return 200;
    case Code::kInvalid:
      return 400;
    case Code::kAccessDenied:
    case Code::kNotPermitted:
      return 403;
    case Code::kNotFound:
      return 404;
    case Code::kExists:
    case Code::kBusy:
    case Code::kNoDevice:
    case Code::kNotEmpty:
      return 409;
    case Code::kTooLarge:
      return 413;
    case Code::kReadOnly:
      return 503;  // the database is gone: nothing can change until a restart
    case Code::kUnavailable:
      return 503;  // the fleet's PostgreSQL: try again
    case Code::kNoSpace:
      return 507;
    case Code::kIoError:
    case Code::kIsFolder:
    case Code::kNotFolder:
      return 500;
  }
  return 500;
}

std::string Api::ErrorBody(int status, const std::string& message) {
  return Json{{"error", {{"code", status}, {"message", message}}}}.dump(-1, ' ', false,
                                                                        Json::error_handler_t::replace) +
         "\n";
}

bool Api::Authorized(const httplib::Request& req) const {
  const std::string value = req.get_header_value("Authorization");
  if (value.size() < 7 || strncasecmp(value.data(), "bearer ", 7) != 0) return false;
  return ConstantTimeEqual(TrimSpaces(std::string_view(value).substr(7)), options_.token);
}

void Api::Handle(const Peer& peer, const httplib::Request& req, httplib::Response& res) {
  Call call{peer, req, res, {}};
  if (peer.tcp && !Authorized(req)) {
    const bool shown = req.has_header("Authorization");
    res.set_header("WWW-Authenticate",
                   shown ? "Bearer realm=\"cyborgfs\", error=\"invalid_token\"" : "Bearer realm=\"cyborgfs\"");
    return Fail(call, 401,
                shown ? "the bearer token is not the API's (--api-token-file)"
                      : "over TCP every request needs \"Authorization: Bearer <token>\" (the --api-token-file's)");
  }
  const std::vector<std::string> segments = Segments(req.path);
  const std::string method = req.method == "HEAD" ? "GET" : req.method;
  std::string allow;
  for (const Route& route : routes_) {
    if (!Matches(route.pattern, segments, call.args)) continue;
    if (method != route.method) {
      if (allow.find(route.method) == std::string::npos) {
        allow += allow.empty() ? "" : ", ";
        allow += route.method == std::string("GET") ? "GET, HEAD" : route.method;
      }
      continue;
    }
    if (route.changes && !peer.caller.MayChange(options_.admin_group)) {
      return Fail(call, 403,
                  "permission denied: only root and the members of the admin group (--admin-group) may change "
                  "accelerators; everyone may read");
    }
    (this->*route.verb)(call);
    if (route.changes && options_.settle) options_.settle();
    return;
  }
  if (allow.empty()) return Fail(call, 404, "no such resource: " + req.path + " (the routes are in cyborgfs(8))");
  res.set_header("Allow", allow + ", OPTIONS");
  if (req.method == "OPTIONS") {
    res.status = 204;
    return;
  }
  Fail(call, 405, "the method " + req.method + " is not allowed on " + req.path + " (allowed: " + allow + ")");
}

// --- replies ----------------------------------------------------------------

void Api::Fail(Call& call, int status, const std::string& message) {
  call.res.status = status;
  call.res.set_content(ErrorBody(status, message), "application/json");
  const std::string who = call.peer.tcp ? call.peer.address : "pid " + std::to_string(call.peer.caller.pid);
  if (status >= 500) {
    spdlog::error("api: {} {} from {}: {} {}", call.req.method, call.req.path, who, status, message);
  } else {
    spdlog::info("api: {} {} from {}: {} {}", call.req.method, call.req.path, who, status, message);
  }
}

void Api::Refuse(Call& call, int64_t id, const std::string& label, Status why) {
  if (id > 0) {
    why = service_.Refuse(id, std::move(why), RequestOf(call, label));
  } else {
    why = why.Prefixed(label);
    audit::Refused(call.peer.caller, "", label, why);
  }
  FailWith(call, why);
}

void Api::ReplyRecord(Call& call, const Accelerator& a, int status) {
  call.res.status = status;
  call.res.set_header("ETag", ETagOf(a));
  call.res.set_content(RecordText(a), "application/json");
}

void Api::ReplyChange(Call& call, const Result<Service::Change>& change, bool with_record) {
  if (!change.ok()) return FailWith(call, change.status());
  if (with_record) return ReplyRecord(call, *change->after);
  call.res.status = 204;
}

Service::Request Api::RequestOf(const Call& call, std::string label) const {
  return Service::Request{call.peer.caller, this, std::move(label)};
}

Service::Snapshot Api::Named(Call& call) {
  const std::string& uuid = call.args.at(0);
  const auto canonical = NormalizeUuid(uuid);
  Service::Snapshot a = canonical ? service_.FindByUuid(*canonical) : nullptr;
  if (!a) Fail(call, 404, "no such accelerator: " + uuid);
  return a;
}

std::optional<Json> Api::Body(Call& call, int64_t id, const std::string& label) {
  const std::string type = call.req.get_header_value("Content-Type");
  const std::string media = Lowercase(std::string(TrimSpaces(std::string_view(type).substr(0, type.find(';')))));
  if (media != "application/json") {
    if (type.empty() && call.req.body.empty()) {
      Refuse(call, id, label, Status::Invalid("a JSON body is required (Content-Type: application/json)"));
    } else {
      Fail(call, 415, label + ": the body must be JSON, sent as Content-Type: application/json, not \"" + type + "\"");
    }
    return std::nullopt;
  }
  ParsedDocument parsed = ParseJsonDocument(call.req.body, DuplicateKeys::kRefused);
  if (parsed.state == DocumentState::kComplete) return std::move(parsed.value);
  Refuse(call, id, label,
         parsed.state == DocumentState::kIncomplete ? parsed.error.Prefixed("incomplete JSON document") : parsed.error);
  return std::nullopt;
}

// --- the verbs ----------------------------------------------------------------

void Api::List(Call& call) {
  const auto listing = service_.ListDocument();
  const std::string etag = "\"r" + std::to_string(listing->revision) + "\"";
  call.res.set_header("ETag", etag);
  if (NoneMatch(call.req, etag)) {
    call.res.status = 304;
    return;
  }
  call.res.status = 200;
  call.res.set_content(listing->body, "application/json");
}

void Api::Get(Call& call) {
  Service::Snapshot a = Named(call);
  if (!a) return;
  if (NoneMatch(call.req, ETagOf(*a))) {
    call.res.set_header("ETag", ETagOf(*a));
    call.res.status = 304;
    return;
  }
  ReplyRecord(call, *a);
}

void Api::GetByName(Call& call) {
  Service::Snapshot a = service_.FindByName(call.args.at(0));
  if (!a) return Fail(call, 404, "no accelerator is named \"" + call.args.at(0) + "\"");
  ReplyRecord(call, *a);
}

void Api::Create(Call& call) {
  std::optional<std::string> path_uuid;
  if (!call.args.empty()) {
    path_uuid = NormalizeUuid(call.args[0]);
    if (!path_uuid) return Refuse(call, 0, "create", Status::Invalid("\"" + call.args[0] + "\" is not a uuid"));
  }
  auto body = Body(call, 0, "create");
  if (!body) return;
  auto request = ParseCreateRequest(*body);
  if (!request.ok()) return Refuse(call, 0, "create", request.status());
  if (path_uuid) {
    if (request->uuid && *request->uuid != *path_uuid) {
      return Refuse(call, 0, "create",
                    Status::Invalid("the body's uuid " + *request->uuid + " is not the path's " + *path_uuid));
    }
    request->uuid = path_uuid;
  }
  auto made = service_.Create(*request, RequestOf(call, "create"));
  if (!made.ok()) return FailWith(call, made.status().Prefixed("create"));
  const Accelerator& a = *made->after;
  call.res.status = 201;
  call.res.set_header("Location", "/accelerators/" + a.uuid);
  call.res.set_header("ETag", ETagOf(a));
}

void Api::SetSpec(Call& call) {
  Service::Snapshot a = Named(call);
  if (!a) return;
  auto expected = ExpectedGeneration(call.req);
  if (!expected.ok()) return Refuse(call, a->id, "spec", expected.status());
  auto body = Body(call, a->id, "spec");
  if (!body) return;
  if (!body->is_object() || body->size() != 1 || !body->contains("acc_specs")) {
    return Refuse(call, a->id, "spec",
                  Status::Invalid("expected {\"acc_specs\": {...}}, the spec as the only key of an object"));
  }
  ReplyChange(call, service_.SetSpec(a->id, (*body)["acc_specs"], std::nullopt, *expected, RequestOf(call)), true);
}

void Api::Attach(Call& call) {
  Service::Snapshot a = Named(call);
  if (!a) return;
  auto body = Body(call, a->id, "attach");
  if (!body) return;
  const auto shape =
      Status::Invalid("expected {\"instance_uuid\": \"<uuid>\"} (a VM) or {\"host\": \"<name>\"} (this host)");
  if (!body->is_object() || body->size() != 1) return Refuse(call, a->id, "attach", shape);
  const std::string& key = body->begin().key();
  const Json& value = body->begin().value();
  if ((key != "instance_uuid" && key != "host") || !value.is_string()) return Refuse(call, a->id, "attach", shape);
  auto target = key == "host" ? HostTarget(value.get<std::string>()) : VmTarget(value.get<std::string>());
  if (!target.ok()) return Refuse(call, a->id, "attach", target.status());
  ReplyChange(call, service_.Attach(a->id, *target, std::nullopt, RequestOf(call)), true);
}

void Api::Detach(Call& call) {
  if (Service::Snapshot a = Named(call)) ReplyChange(call, service_.Detach(a->id, RequestOf(call)), false);
}

void Api::Rename(Call& call) {
  Service::Snapshot a = Named(call);
  if (!a) return;
  auto body = Body(call, a->id, "name");
  if (!body) return;
  if (!body->is_object() || body->size() != 1 || !body->contains("name") || !(*body)["name"].is_string()) {
    return Refuse(call, a->id, "name", Status::Invalid("expected {\"name\": \"<new name>\"}"));
  }
  ReplyChange(call, service_.Rename(a->id, (*body)["name"].get<std::string>(), std::nullopt, RequestOf(call)), true);
}

void Api::Metrics(Call& call) {
  MetricsInput in;
  in.host = service_.host();
  in.accelerators = service_.List();
  if (options_.request_counts) in.requests = options_.request_counts();
  in.store_commits = service_.StoreCommits();
  if (options_.fleet) {
    const Json report = Json::parse(service_.DriversReport(), nullptr, false);
    if (report.is_object() && report.contains("fleet")) in.fleet = report["fleet"];
  }
  call.res.status = 200;
  call.res.set_content(RenderMetrics(in), "text/plain; version=0.0.4; charset=utf-8");
}

// Cyborg v2's device disable and enable: the maintenance file.
void Api::Disable(Call& call) {
  if (Service::Snapshot a = Named(call)) ReplyChange(call, service_.SetMaintenance(a->id, true, RequestOf(call)), true);
}

void Api::Enable(Call& call) {
  if (Service::Snapshot a = Named(call))
    ReplyChange(call, service_.SetMaintenance(a->id, false, RequestOf(call)), true);
}

void Api::Remove(Call& call) {
  if (Service::Snapshot a = Named(call)) ReplyChange(call, service_.Remove(a->id, RequestOf(call)), false);
}

void Api::Rescan(Call& call) {
  if (Status s = service_.Rescan(RequestOf(call, "rescan")); !s.ok()) return FailWith(call, s.Prefixed("rescan"));
  Drivers(call);
}

void Api::Drivers(Call& call) {
  call.res.status = 200;
  call.res.set_content(service_.DriversReport(), "application/json");
}

// --- the fleet -----------------------------------------------------------------

namespace {

Json HostJson(const FleetHost& host) {
  Json uuids = Json::array();
  for (const auto& a : host.accelerators) uuids.push_back(a->record.uuid);
  return Json{{"name", host.name},
              {"status", host.up ? "up" : "down"},
              {"lease_expires_at", host.lease_expires_at},
              {"accelerators", std::move(uuids)}};
}

// The ETag of a fleet reply: the view's revision.
std::string FleetETag(const FleetView& view) { return "\"f" + std::to_string(view.revision) + "\""; }

}  // namespace

FleetBoard::View Api::Fleet(Call& call) {
  if (options_.fleet) return options_.fleet->Current();
  Fail(call, 404, "no fleet: this cyborgfs runs without --fleet");
  return nullptr;
}

void Api::ListFleetHosts(Call& call) {
  const auto view = Fleet(call);
  if (!view) return;
  std::vector<const FleetHost*> hosts;
  for (const FleetHost& host : view->hosts) hosts.push_back(&host);
  std::sort(hosts.begin(), hosts.end(), [](const FleetHost* x, const FleetHost* y) { return x->name < y->name; });
  Json list = Json::array();
  for (const FleetHost* host : hosts) list.push_back(HostJson(*host));
  call.res.status = 200;
  call.res.set_header("ETag", FleetETag(*view));
  call.res.set_content(Json{{"hosts", std::move(list)}}.dump() + "\n", "application/json");
}

void Api::GetFleetHost(Call& call) {
  const auto view = Fleet(call);
  if (!view) return;
  const FleetHost* host = view->Host(call.args.at(0));
  if (!host) return Fail(call, 404, "no host of the fleet is named \"" + call.args.at(0) + "\"");
  call.res.status = 200;
  call.res.set_header("ETag", FleetETag(*view));
  call.res.set_content(HostJson(*host).dump() + "\n", "application/json");
}

// ?host=&device_type=&status=&vendor_id=: every one given must equal.
void Api::ListFleet(Call& call) {
  const auto view = Fleet(call);
  if (!view) return;
  static const char* const kFilters[] = {"host", "device_type", "status", "vendor_id"};
  std::vector<std::pair<std::string, std::string>> filters;
  for (const auto& [key, value] : call.req.params) {
    if (std::find_if(std::begin(kFilters), std::end(kFilters), [&](const char* f) { return key == f; }) ==
        std::end(kFilters)) {
      return Fail(call, 400, "unknown filter \"" + key + "\" (the filters: host, device_type, status, vendor_id)");
    }
    filters.emplace_back(key, value);
  }
  const std::string etag = FleetETag(*view);
  call.res.set_header("ETag", etag);
  if (NoneMatch(call.req, etag)) {
    call.res.status = 304;
    return;
  }
  call.res.status = 200;
  if (filters.empty()) return call.res.set_content(*view->ListBody(), "application/json");
  std::string body = "{\"accelerator\":[";
  for (const auto& [number, a] : view->accelerators) {
    const Accelerator& r = a->record;
    bool wanted = true;
    for (const auto& [key, value] : filters) {
      const std::string& has = key == "host"          ? a->host
                               : key == "device_type" ? r.device_type
                               : key == "vendor_id"   ? r.vendor_id
                                                      : std::string(StateName(r.state));
      wanted = wanted && has == value;
    }
    if (!wanted) continue;
    if (body.back() != '[') body += ',';
    body += FleetRecordText(r, a->host, view->HostUp(a->host));
  }
  body += "]}\n";
  call.res.set_content(body, "application/json");
}

void Api::GetFleetAccelerator(Call& call) {
  const auto view = Fleet(call);
  if (!view) return;
  const auto uuid = NormalizeUuid(call.args.at(0));
  const FleetAccelerator* a = uuid ? view->Find(*uuid) : nullptr;
  if (!a) return Fail(call, 404, "no accelerator of the fleet has the uuid " + call.args.at(0));
  call.res.status = 200;
  call.res.set_header("ETag", "\"" + a->host + ":" + std::to_string(a->revision) + "\"");
  call.res.set_content(FleetRecordText(a->record, a->host, view->HostUp(a->host)) + "\n", "application/json");
}

// --- accelerator requests ---------------------------------------------------------

AcceleratorRequests* Api::Requests(Call& call) {
  if (options_.requests) return options_.requests;
  Fail(call, 404, "no fleet: this cyborgfs runs without --fleet");
  return nullptr;
}

void Api::CreateRequest(Call& call) {
  AcceleratorRequests* requests = Requests(call);
  if (!requests) return;
  auto body = Body(call, 0, "accelerator request");
  if (!body) return;
  auto made = requests->Create(*body, AcceleratorRequests::Taken::kExists, call.peer.caller);
  if (!made.ok()) return FailWith(call, made.status());
  call.res.status = 201;
  call.res.set_header("Location", "/fleet/accelerator_requests/" + (*made)["uuid"].get<std::string>());
  call.res.set_content(made->dump() + "\n", "application/json");
}

void Api::ListRequests(Call& call) {
  AcceleratorRequests* requests = Requests(call);
  if (!requests) return;
  std::optional<std::string> instance;
  for (const auto& [key, value] : call.req.params) {
    if (key != "instance") return Fail(call, 400, "unknown filter \"" + key + "\" (the filter: instance)");
    instance = value;
  }
  auto list = requests->List(instance);
  if (!list.ok()) return FailWith(call, list.status());
  call.res.status = 200;
  call.res.set_content(list->dump() + "\n", "application/json");
}

void Api::GetRequest(Call& call) {
  AcceleratorRequests* requests = Requests(call);
  if (!requests) return;
  auto request = requests->Get(call.args.at(0));
  if (!request.ok()) return FailWith(call, request.status());
  call.res.status = 200;
  call.res.set_content(request->dump() + "\n", "application/json");
}

void Api::DeleteRequest(Call& call) {
  AcceleratorRequests* requests = Requests(call);
  if (!requests) return;
  if (Status s = requests->Delete(call.args.at(0), call.peer.caller); !s.ok()) return FailWith(call, s);
  call.res.status = 204;
}

}  // namespace cyborgfs::api
