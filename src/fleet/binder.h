// The fleet's binder: this host's side of accelerator requests (--fleet).
//
// A request claimed in PostgreSQL names the host that has the accelerators
// (fleet_requests.host); that host's binder attaches them locally, through
// the Service's Attach (the same path as a local attach: the driver, the
// store, the audit trail, with the request as the caller), and records the
// request Bound with the attach handles, or BindFailed with why (the claims
// released, what it had attached detached). For a request Deleting it
// detaches them and deletes the request; a detach that fails is
// UnbindFailed, retried at every round.
//
// Woken by NOTIFY cyborgfs_requests (a doorbell only), and at least every
// kPollEvery, each round reads everything still to do for this host in one
// query, so nothing is missed while disconnected. Each round also claims
// the requests left Initial (inserted by SQL without fleet_claim()), and
// fails those no host bound within the bind timeout (a host that died after
// the claim): any host may, the first one does.
//
// Every step on PostgreSQL is a compare-and-swap on the request's state, so
// a bind that comes after the timeout, or a delete, is undone, never kept;
// and an accelerator held here (Accelerator::held_by) for a request that no
// longer holds it there (the daemon stopped between the attach and Bound) is
// detached at the next round.
#pragma once

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "cyborgfs/service.h"
#include "cyborgfs/status.h"
#include "postgres.h"
#include "stop_signal.h"

namespace cyborgfs::fleet {

class Binder {
 public:
  struct Options {
    std::string conninfo;
    std::string host;                   // this host's name: the requests it binds
    std::chrono::seconds bind_timeout;  // BindStarted longer than this: BindFailed
  };
  static constexpr std::chrono::milliseconds kPollEvery{1000};

  Binder(Service& service, Options options);
  ~Binder();
  Binder(const Binder&) = delete;
  Binder& operator=(const Binder&) = delete;

  void Start();  // after fork (fuse_daemonize)
  void Stop();

 private:
  struct ToDo {
    std::string uuid;
    std::string state;
    std::string instance;
    std::vector<std::string> accelerators;
  };
  void Run();
  // One connection's life; `served` once a round worked.
  Status Session(bool& served);
  Status Round(Postgres& db);
  Status Bind(Postgres& db, const ToDo& request);
  Status Unbind(Postgres& db, const ToDo& request);
  // Detaches those of `accelerators` attached to `instance` here, as `request`
  // asks; the first failure's words, or "".
  std::string DetachAll(const ToDo& request, const std::vector<std::string>& accelerators);
  // Detaches what this host holds for a request that no longer holds it in
  // PostgreSQL (it failed by the timeout after the attach, before Bound).
  Status ReleaseStrays(Postgres& db);

  Service& service_;
  const Options options_;
  StopSignal stop_;
  std::thread thread_;
};

}  // namespace cyborgfs::fleet
