// The REST API: the Cyborg spec's routes over the Service's verbs, and routes
// for what the files do that the spec does not name. docs/api.md is the
// reference (every route, body and code); this is how it is served.
//
// A request is authenticated (over TCP: the bearer token), routed (404 for a
// path no route has, 405 with Allow for a method the path does not take),
// permitted (a change, POST, PUT or DELETE, needs Caller::MayChange: root or
// the admin group on the unix socket, the token over TCP), its JSON body
// read (415 unless Content-Type is application/json, 400 for JSON that does
// not parse, names a key twice or is not the route's shape), and handed to
// one verb. The verb's Status becomes the response's (HttpStatus, the one
// mapping); every error body is ErrorBody. A body the API refuses itself for
// an accelerator is recorded as the verb's refusals are (its error file, the
// audit trail), worded the same. After every change, before the reply,
// Options::settle runs: the mount's caches are made current, so the change
// is seen through the files when the client has its answer.
//
// The fleet's routes (GET /fleet/...) answer from the FleetBoard's current
// view, never waiting for PostgreSQL; they take GET and HEAD only (405: a
// host's accelerators change through that host). Those of accelerator
// requests (/fleet/accelerator_requests) call AcceleratorRequests, which
// needs PostgreSQL (503 while it is away).
//
// Responses are JSON (records.h) with one trailing newline; a record comes
// with ETag: "<generation>", a list with ETag: "r<revision>"; If-None-Match
// answers 304, If-Match on a spec update is the generation it expects.
//
// Thread safety: Handle may be called concurrently.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cyborgfs/accelerator_requests.h"
#include "cyborgfs/fleet_view.h"
#include "cyborgfs/service.h"
#include "http_server.h"

namespace cyborgfs::api {

class Api {
 public:
  struct Options {
    gid_t admin_group = 0;                    // on the unix socket, its members may change (as root may)
    std::string token;                        // what TCP clients must show; empty: they are all refused
    std::function<void()> settle;             // after a change, before the reply
    const FleetBoard* fleet = nullptr;        // --fleet: GET /fleet/... show its view
    AcceleratorRequests* requests = nullptr;  // --fleet: /fleet/accelerator_requests
    std::function<Json()> request_counts;     // GET /metrics: the FUSE requests answered, per operation
  };
  Api(Service& service, Options options);

  void Handle(const Peer& peer, const httplib::Request& req, httplib::Response& res);

  // The HTTP status of a core Status (the one place that maps them).
  static int HttpStatus(Code code);
  // {"error": {"code": <status>, "message": <message>}} and a newline.
  static std::string ErrorBody(int status, const std::string& message);

 private:
  struct Call;
  using Verb = void (Api::*)(Call& call);
  struct Route {
    const char* method;
    std::vector<std::string_view> pattern;  // "{x}": any one segment
    Verb verb;
    bool changes;
  };

  // The verbs. Each replies in call.res.
  void List(Call& call);
  void Get(Call& call);
  void GetByName(Call& call);
  void Create(Call& call);
  void SetSpec(Call& call);
  void Attach(Call& call);
  void Detach(Call& call);
  void Rename(Call& call);
  void Disable(Call& call);
  void Metrics(Call& call);
  void Enable(Call& call);
  void Remove(Call& call);
  void Rescan(Call& call);
  void Drivers(Call& call);
  void ListFleetHosts(Call& call);
  void GetFleetHost(Call& call);
  void ListFleet(Call& call);
  void GetFleetAccelerator(Call& call);
  void CreateRequest(Call& call);
  void ListRequests(Call& call);
  void GetRequest(Call& call);
  void DeleteRequest(Call& call);

  // The fleet's current view, or a 404 replied (no --fleet).
  FleetBoard::View Fleet(Call& call);
  // The fleet's accelerator requests, or a 404 replied (no --fleet).
  AcceleratorRequests* Requests(Call& call);

  // The accelerator the path's {uuid} names, or a 404 replied.
  Service::Snapshot Named(Call& call);
  // The request's JSON body, or an error replied (and, for accelerator
  // `id` > 0, recorded as `label`'s refusal).
  std::optional<Json> Body(Call& call, int64_t id, const std::string& label);
  void Refuse(Call& call, int64_t id, const std::string& label, Status why);
  void Fail(Call& call, int status, const std::string& message);
  void FailWith(Call& call, const Status& why) { Fail(call, HttpStatus(why.code()), why.message()); }
  void ReplyRecord(Call& call, const Accelerator& a, int status = 200);
  // A verb's outcome: the record (200), or nothing (204), or its error.
  void ReplyChange(Call& call, const Result<Service::Change>& change, bool with_record);
  Service::Request RequestOf(const Call& call, std::string label = {}) const;
  bool Authorized(const httplib::Request& req) const;

  Service& service_;
  const Options options_;
  const std::vector<Route> routes_;
};

}  // namespace cyborgfs::api
