// The fleet's reader: every host's accelerators, read from the fleet's
// PostgreSQL (--fleet) into the FleetBoard that MOUNT/fleet/ and GET
// /fleet/... show.
//
// Fresh within about a second, without trusting notifications: the reader
// LISTENs to cyborgfs_fleet (each publication NOTIFYs it) only to wake up
// early; what it reads is decided by revisions. Every row of
// fleet_accelerators has a revision (a sequence, taken under its host's row
// lock, so one host's revisions commit in order), and each time it wakes, or
// kPollEvery at the latest, the reader reads in one snapshot the hosts (their
// leases, judged on the server's clock, and the highest revision of each
// host's rows) and then only the rows of hosts whose highest revision moved
// past what it has, tombstones (removed rows) included; at most every
// kReadAtMostEvery, so a burst of changes costs one read. A notification lost
// while disconnected costs nothing: the next poll finds the revision moved.
// At every connection, and every kReloadEvery, it reads everything again.
//
// The accelerator requests come in the same snapshot: when a fingerprint of
// every request's (uuid, revision) moved, the (uuid, revision) pairs, then
// the requests new or changed, whole. Every change of a request NOTIFYs
// cyborgfs_fleet too (schema 4's trigger).
//
// A front end's FleetBoard::AwaitRead() wakes it: the next read begins at
// once (after those in flight), without kReadAtMostEvery's pause.
//
// While PostgreSQL is away the view stays as last read (its report says
// since when); the local accelerators never wait for it.
//
// Its state is the drivers file's "fleet_view" part (Report()).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "cyborgfs/fleet_view.h"
#include "cyborgfs/service.h"
#include "cyborgfs/status.h"
#include "cyborgfs/values.h"
#include "stop_signal.h"

namespace cyborgfs::fleet {

class Postgres;

class FleetReader {
 public:
  struct Options {
    std::string conninfo;
    std::string host;  // this host's name (for pg_stat_activity)
  };
  static constexpr std::chrono::milliseconds kPollEvery{1000};
  // Notifications coming faster are taken together: a read at most this often.
  static constexpr std::chrono::milliseconds kReadAtMostEvery{50};
  static constexpr std::chrono::seconds kReloadEvery{300};

  // Adds its part to `service`'s drivers report.
  FleetReader(Service& service, FleetBoard& board, Options options);
  ~FleetReader();
  FleetReader(const FleetReader&) = delete;
  FleetReader& operator=(const FleetReader&) = delete;

  // Starts the thread (after fork: fuse_daemonize); Stop() ends it.
  void Start();
  void Stop();
  // {"state": "ok" | "degraded", "hosts", "accelerators", "read_at",
  //  "revision", "problems": [...]}
  Json Report() const;

 private:
  void Run();
  // One connection's life; returns why it ended (Ok: stopped).
  Status Session();
  // Reads what changed (everything if `whole`) and publishes a new view if
  // anything did.
  Status Read(Postgres& db, bool whole);
  uint64_t Number(std::unordered_map<std::string, uint64_t>& numbers, const std::string& key);

  FleetBoard& board_;
  const Options options_;
  const std::string server_;
  StopSignal stop_;

  // The thread's own.
  std::unordered_map<std::string, uint64_t> host_numbers_, uuid_numbers_;
  uint64_t next_number_ = 1;
  std::map<std::string, int64_t> read_up_to_;  // host -> the highest revision of its rows read
  std::map<std::string, int64_t> refused_;     // uuid -> the revision whose record was refused (logged once)
  std::unordered_map<std::string, uint64_t> request_numbers_;  // of the requests in the view
  std::string requests_fingerprint_;                           // as last read

  mutable std::mutex mu_;
  std::string problem_;        // REQUIRES: mu_; empty: reading works
  int64_t failing_since_ = 0;  // REQUIRES: mu_
  int64_t read_at_ = 0;        // REQUIRES: mu_; unix seconds of the last read that worked
  std::thread thread_;
};

}  // namespace cyborgfs::fleet
