// One connection to the fleet's PostgreSQL, through libpq: the little the
// publisher and the reader need (statements with text parameters, rows as text), with
// bounded waits.
//
// A connection never waits on the network for ever: connecting gives up
// after kConnectSeconds, a statement after kStatementSeconds
// (statement_timeout), and a peer that stops answering is noticed by TCP
// keepalives and tcp_user_timeout. What the conninfo sets itself wins.
//
// Errors: every failure is kIoError with libpq's words; once the
// connection is broken (Broken()), every call fails: make a new one.
//
// Thread safety: none; one thread uses a connection.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cyborgfs/status.h"

struct pg_conn;

namespace cyborgfs::fleet {

inline constexpr int kConnectSeconds = 5;
inline constexpr int kStatementSeconds = 15;

using Row = std::vector<std::optional<std::string>>;  // a column's text, or NULL
using Param = std::optional<std::string>;             // nullopt: NULL

class Postgres {
 public:
  // `application` is what pg_stat_activity shows.
  static Result<std::unique_ptr<Postgres>> Connect(const std::string& conninfo, const std::string& application);
  ~Postgres();
  Postgres(const Postgres&) = delete;
  Postgres& operator=(const Postgres&) = delete;

  // Runs one statement (or several, without parameters); returns its rows.
  Result<std::vector<Row>> Exec(const std::string& sql, const std::vector<Param>& params = {});
  bool Broken() const;
  // Waits until a notification of a channel this connection LISTENs to
  // comes, `wake_fd` is readable, or `timeout` passes; returns the payloads
  // of the notifications come (none on a wake or a timeout).
  Result<std::vector<std::string>> AwaitNotifications(int wake_fd, std::chrono::milliseconds timeout);
  // The conninfo without its password, for messages.
  static std::string Describe(const std::string& conninfo);

 private:
  explicit Postgres(pg_conn* conn) : conn_(conn) {}
  pg_conn* conn_;
};

// A transaction on `db`: Commit() ends it; otherwise it is rolled back when
// the object goes (or the connection breaks).
class Transaction {
 public:
  explicit Transaction(Postgres& db) : db_(db) {}
  ~Transaction();
  Status Begin();
  Status Commit();

 private:
  Postgres& db_;
  bool open_ = false;
};

}  // namespace cyborgfs::fleet
