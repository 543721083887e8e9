#include "postgres.h"

#include <libpq-fe.h>
#include <poll.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace cyborgfs::fleet {
namespace {

std::string Trimmed(const char* message) {
  // One line: libpq's messages span lines, some indented with tabs.
  std::string text;
  for (const char* p = message ? message : ""; *p; ++p) {
    const bool space = *p == '\n' || *p == '\t' || *p == ' ';
    if (space && (text.empty() || text.back() == ' ')) continue;
    text += space ? ' ' : *p;
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text.empty() ? "unknown error" : text;
}

}  // namespace

Result<std::unique_ptr<Postgres>> Postgres::Connect(const std::string& conninfo, const std::string& application) {
  // Ours first: the conninfo (expanded in place of dbname) overrides them.
  const std::string connect_timeout = std::to_string(kConnectSeconds);
  const std::string options = "-c statement_timeout=" + std::to_string(kStatementSeconds * 1000);
  const std::string user_timeout = std::to_string(kStatementSeconds * 1000);
  const char* keywords[] = {"connect_timeout",  "keepalives",
                            "keepalives_idle",  "keepalives_interval",
                            "keepalives_count", "tcp_user_timeout",
                            "application_name", "options",
                            "dbname",           nullptr};
  const char* values[] = {
      connect_timeout.c_str(), "1",    "5", "2", "3", user_timeout.c_str(), application.c_str(), options.c_str(),
      conninfo.c_str(),        nullptr};
  pg_conn* conn = PQconnectdbParams(keywords, values, 1);
  if (!conn) return Status::IoError("PostgreSQL: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string why = Trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    return Status::IoError("cannot connect to PostgreSQL (" + Describe(conninfo) + "): " + why);
  }
  return std::unique_ptr<Postgres>(new Postgres(conn));
}

Postgres::~Postgres() { PQfinish(conn_); }

bool Postgres::Broken() const { return PQstatus(conn_) != CONNECTION_OK; }

Result<std::vector<Row>> Postgres::Exec(const std::string& sql, const std::vector<Param>& params) {
  if (Broken()) return Status::IoError("PostgreSQL: the connection is broken");
  std::vector<const char*> values;
  for (const Param& p : params) values.push_back(p ? p->c_str() : nullptr);
  PGresult* result = params.empty() ? PQexec(conn_, sql.c_str())
                                    : PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                                                   values.data(), nullptr, nullptr, 0);
  const ExecStatusType status = result ? PQresultStatus(result) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    const std::string why = Trimmed(result ? PQresultErrorMessage(result) : PQerrorMessage(conn_));
    PQclear(result);
    return Status::IoError("PostgreSQL: " + why);
  }
  std::vector<Row> rows;
  const int columns = PQnfields(result);
  for (int r = 0; r < PQntuples(result); ++r) {
    Row row;
    for (int c = 0; c < columns; ++c) {
      if (PQgetisnull(result, r, c)) {
        row.emplace_back(std::nullopt);
      } else {
        row.emplace_back(std::string(PQgetvalue(result, r, c), static_cast<size_t>(PQgetlength(result, r, c))));
      }
    }
    rows.push_back(std::move(row));
  }
  PQclear(result);
  return rows;
}

Result<std::vector<std::string>> Postgres::AwaitNotifications(int wake_fd, std::chrono::milliseconds timeout) {
  std::vector<std::string> payloads;
  auto take = [&] {
    while (PGnotify* n = PQnotifies(conn_)) {
      payloads.emplace_back(n->extra ? n->extra : "");
      PQfreemem(n);
    }
  };
  take();  // those a statement's reply brought
  if (!payloads.empty()) return payloads;
  if (Broken()) return Status::IoError("PostgreSQL: the connection is broken");
  pollfd fds[2] = {{PQsocket(conn_), POLLIN, 0}, {wake_fd, POLLIN, 0}};
  const int ready = poll(fds, 2, static_cast<int>(timeout.count()));
  if (ready < 0 && errno != EINTR) return Status::IoError(std::string("poll: ") + std::strerror(errno));
  if (ready > 0 && fds[0].revents) {
    if (PQconsumeInput(conn_) == 0) return Status::IoError("PostgreSQL: " + Trimmed(PQerrorMessage(conn_)));
    take();
  }
  return payloads;
}

std::string Postgres::Describe(const std::string& conninfo) {
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), nullptr);
  if (!options) return "an unreadable conninfo";
  std::string out;
  for (PQconninfoOption* o = options; o->keyword; ++o) {
    if (!o->val || !*o->val || std::string(o->keyword) == "password") continue;
    out += (out.empty() ? "" : " ") + std::string(o->keyword) + "=" + o->val;
  }
  PQconninfoFree(options);
  return out.empty() ? "the defaults" : out;
}

Transaction::~Transaction() {
  if (open_ && !db_.Broken()) (void)db_.Exec("ROLLBACK");
}

Status Transaction::Begin() {
  auto begun = db_.Exec("BEGIN");
  if (!begun.ok()) return begun.status();
  open_ = true;
  return Status::Ok();
}

Status Transaction::Commit() {
  auto committed = db_.Exec("COMMIT");
  open_ = false;
  return committed.status();
}

}  // namespace cyborgfs::fleet
