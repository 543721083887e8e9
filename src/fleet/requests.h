// The fleet's accelerator requests on PostgreSQL (--fleet): the
// AcceleratorRequests the REST API and the files call (the states and the
// record: cyborgfs/accelerator_requests.h; the tables: docs/fleet.md).
//
// Each call is one transaction on a connection of a small pool (made when
// needed, kept while it works; a broken one is dropped). Create inserts the
// request and claims for it in the same transaction (fleet_claim(), which
// NOTIFYs the owning host's binder); Delete marks it Deleting for that host
// (or deletes it when it holds nothing). PostgreSQL away: kUnavailable, and
// nothing changed. The schema is the publisher's (it migrates it).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cyborgfs/accelerator_requests.h"

namespace cyborgfs::fleet {

class Postgres;

class Requests : public AcceleratorRequests {
 public:
  // `host` is this host's name (for pg_stat_activity).
  Requests(std::string conninfo, std::string host);
  ~Requests() override;

  Result<Json> Create(const Json& body, Taken taken, const Caller& who) override;
  Result<Json> Get(const std::string& uuid) override;
  Result<Json> List(const std::optional<std::string>& instance) override;
  Status Delete(const std::string& uuid, const Caller& who) override;

  // The columns and the query Get and List read a request with (the binder
  // reads the same record).
  static const char* const kSelect;
  static Json FromRow(const std::vector<std::optional<std::string>>& row);

 private:
  // A connection of the pool for one call; Give() returns it.
  Result<std::unique_ptr<Postgres>> Take();
  void Give(std::unique_ptr<Postgres> db);
  // Runs `call` on a pooled connection; a connection failure is kUnavailable.
  template <typename T, typename Call>
  Result<T> With(Call call);

  const std::string conninfo_;
  const std::string host_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Postgres>> idle_;  // REQUIRES: mu_
};

}  // namespace cyborgfs::fleet
