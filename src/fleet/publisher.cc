#include "publisher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <iterator>
#include <random>

#include "cyborgfs/records.h"
#include "postgres.h"
#include "timing.h"

namespace cyborgfs::fleet {
namespace {

// fleet_claim(): claims for a request in state Initial, atomically, without
// waiting for other claimers (SKIP LOCKED on the candidates, fleet_claims'
// key as the last word). Candidates: available, not in maintenance, not
// held, on hosts that are up, of the type, host and match asked. Made by
// migration 3, made again (as it is now) by 5.
const std::string kClaimFunction = R"sql(
    CREATE OR REPLACE FUNCTION fleet_claim(wanted uuid) RETURNS text LANGUAGE plpgsql AS $claim$
    DECLARE
      r fleet_requests;
      h text;
      picked uuid[];
      seen boolean;
    BEGIN
      SELECT * INTO r FROM fleet_requests WHERE uuid = wanted FOR UPDATE;
      IF NOT FOUND THEN RETURN NULL; END IF;
      IF r.state <> 'Initial' THEN RETURN r.state; END IF;
      -- The candidate conditions are spelled out in both queries below: a SQL
      -- function holding them once (fleet_is_candidate(a, r), whole rows as
      -- arguments) is not inlined, and made claims 3x slower in
      -- bench/requests_bench.py (173/s instead of 500-600/s).
      FOR attempt IN 1..200 LOOP
        seen := false;
        FOR h IN
          SELECT a.host FROM fleet_accelerators a JOIN fleet_hosts fh ON fh.name = a.host
          WHERE NOT a.removed AND a.status = 'available' AND a.device_type = r.device_type
            AND a.record->>'maintenance' IS DISTINCT FROM '1'
            AND fh.lease_expires_at > now() AND (r.wanted_host IS NULL OR a.host = r.wanted_host)
            AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(r.match) m
                            WHERE m.value IS DISTINCT FROM a.record->>m.key
                              AND m.value IS DISTINCT FROM a.record->'acc_specs'->>m.key)
            AND NOT EXISTS (SELECT 1 FROM fleet_claims k WHERE k.accelerator = a.uuid)
          GROUP BY a.host HAVING count(*) >= r.count ORDER BY random()
        LOOP
          seen := true;
          BEGIN
            SELECT array_agg(c.uuid) INTO picked FROM (
              SELECT a.uuid FROM fleet_accelerators a
              WHERE a.host = h AND NOT a.removed AND a.status = 'available' AND a.device_type = r.device_type
                AND a.record->>'maintenance' IS DISTINCT FROM '1'
                AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(r.match) m
                                WHERE m.value IS DISTINCT FROM a.record->>m.key
                                  AND m.value IS DISTINCT FROM a.record->'acc_specs'->>m.key)
                AND NOT EXISTS (SELECT 1 FROM fleet_claims k WHERE k.accelerator = a.uuid)
              ORDER BY random() LIMIT r.count FOR UPDATE OF a SKIP LOCKED) c;
            IF coalesce(array_length(picked, 1), 0) = r.count THEN
              INSERT INTO fleet_claims (accelerator, request, host) SELECT unnest(picked), wanted, h;
              UPDATE fleet_requests SET state = 'BindStarted', host = h, error = '', claimed_at = now(),
                     updated_at = now(), revision = nextval('fleet_revision')
              WHERE uuid = wanted;
              PERFORM pg_notify('cyborgfs_requests', h);
              RETURN 'BindStarted';
            END IF;
          EXCEPTION WHEN unique_violation THEN
            NULL;  -- claimed by another request since this statement's snapshot: look again
          END;
        END LOOP;
        EXIT WHEN NOT seen;
        PERFORM pg_sleep(0.002);  -- candidates, but locked by other claimers: look again
      END LOOP;
      UPDATE fleet_requests SET state = 'BindFailed', updated_at = now(), revision = nextval('fleet_revision'),
             error = CASE WHEN seen THEN 'no accelerator could be claimed: every candidate stayed busy'
                     ELSE format('no accelerator available: no host that is up has %s free %s%s%s', r.count,
                                 r.device_type, CASE WHEN r.match = '{}' THEN '' ELSE ' matching ' || r.match::text END,
                                 CASE WHEN r.wanted_host IS NULL THEN '' ELSE ' on ' || r.wanted_host END) END
      WHERE uuid = wanted;
      RETURN 'BindFailed';
    END
    $claim$;
    )sql";

// Migration i takes the fleet's schema from version i to i + 1. Never edit
// one that has shipped; append. The tables are an interface: schedulers and
// people query them (README, "The fleet's tables").
const std::string kMigrations[] = {
    R"sql(
    CREATE TABLE fleet_hosts (
      name             text PRIMARY KEY,
      epoch            bigint NOT NULL,
      start_id         bigint NOT NULL,
      boot_id          text NOT NULL,
      lease_expires_at timestamptz NOT NULL,
      last_seq         bigint NOT NULL DEFAULT 0,
      resyncs          bigint NOT NULL DEFAULT 0,
      resynced_at      timestamptz,
      first_seen_at    timestamptz NOT NULL DEFAULT now()
    );
    CREATE SEQUENCE fleet_revision;
    CREATE TABLE fleet_accelerators (
      uuid          uuid PRIMARY KEY,
      host          text NOT NULL REFERENCES fleet_hosts (name) ON DELETE CASCADE,
      name          text NOT NULL,
      device_type   text NOT NULL,
      acc_type      text NOT NULL,
      vendor_id     text NOT NULL,
      product_id    text NOT NULL,
      status        text NOT NULL,
      attach        text NOT NULL,
      attach_handle text NOT NULL,
      driver        text NOT NULL,
      record        jsonb NOT NULL,
      removed       boolean NOT NULL DEFAULT false,
      epoch         bigint NOT NULL,
      seq           bigint NOT NULL,
      revision      bigint NOT NULL DEFAULT nextval('fleet_revision'),
      updated_at    timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX fleet_accelerators_by_host ON fleet_accelerators (host);
    CREATE INDEX fleet_accelerators_by_kind ON fleet_accelerators (device_type, status) WHERE NOT removed;
    CREATE INDEX fleet_accelerators_by_revision ON fleet_accelerators (revision);
    CREATE VIEW fleet_host_status AS
      SELECT name AS host, CASE WHEN lease_expires_at > now() THEN 'up' ELSE 'down' END AS status,
             lease_expires_at, epoch, start_id, boot_id, last_seq, resynced_at
      FROM fleet_hosts;
    CREATE VIEW fleet_inventory AS
      SELECT a.uuid, a.host, h.status AS host_status, a.name, a.device_type, a.acc_type, a.vendor_id,
             a.product_id, a.status, a.attach, a.attach_handle, a.driver, a.record, a.updated_at, a.revision
      FROM fleet_accelerators a JOIN fleet_host_status h ON h.host = a.host
      WHERE NOT a.removed;
    )sql",
    // 2: the readers ask each host's highest revision (fleet_reader.cc): one
    // index probe per host instead of a scan by revision.
    R"sql(
    CREATE INDEX fleet_accelerators_by_host_revision ON fleet_accelerators (host, revision);
    DROP INDEX fleet_accelerators_by_host;
    )sql",
    // 3: accelerator requests (docs/fleet.md, "Requests"): what is wanted for
    // whom, and the accelerators each holds. fleet_claims' primary key is
    // the rule that no accelerator is held by two requests; fleet_claim()
    // claims for a request in state Initial, atomically, without waiting for
    // other claimers (SKIP LOCKED on the candidates, the key as the last word).
    R"sql(
    CREATE TABLE fleet_requests (
      uuid          uuid PRIMARY KEY,
      instance_uuid uuid NOT NULL,
      device_type   text NOT NULL,
      wanted_host   text,
      match         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(match) = 'object'),
      count         integer NOT NULL DEFAULT 1 CHECK (count BETWEEN 1 AND 64),
      state         text NOT NULL DEFAULT 'Initial' CHECK (state IN ('Initial', 'BindStarted', 'Bound',
                                                           'BindFailed', 'Deleting', 'UnbindFailed')),
      host          text,
      error         text NOT NULL DEFAULT '',
      created_at    timestamptz NOT NULL DEFAULT now(),
      claimed_at    timestamptz,
      updated_at    timestamptz NOT NULL DEFAULT now(),
      revision      bigint NOT NULL DEFAULT nextval('fleet_revision')
    );
    CREATE INDEX fleet_requests_by_instance ON fleet_requests (instance_uuid);
    CREATE INDEX fleet_requests_to_do ON fleet_requests (host, state)
      WHERE state IN ('Initial', 'BindStarted', 'Deleting', 'UnbindFailed');
    CREATE TABLE fleet_claims (
      accelerator   uuid PRIMARY KEY,
      request       uuid NOT NULL REFERENCES fleet_requests (uuid) ON DELETE CASCADE,
      host          text NOT NULL,
      attach_handle text NOT NULL DEFAULT '',
      claimed_at    timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX fleet_claims_by_request ON fleet_claims (request);
    )sql" +
        kClaimFunction,
    // 4: whoever changes a request (a host, a scheduler's SQL), its revision
    // moves and the fleet's readers are woken (MOUNT/fleet/requests/ shows
    // them from each host's view: fleet_reader.h).
    R"sql(
    CREATE FUNCTION fleet_request_revision() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      NEW.revision := nextval('fleet_revision');
      RETURN NEW;
    END
    $$;
    CREATE TRIGGER fleet_requests_revision BEFORE INSERT OR UPDATE ON fleet_requests
      FOR EACH ROW EXECUTE FUNCTION fleet_request_revision();
    CREATE FUNCTION fleet_requests_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('cyborgfs_fleet', 'requests');
      RETURN NULL;
    END
    $$;
    CREATE TRIGGER fleet_requests_changed AFTER INSERT OR UPDATE OR DELETE ON fleet_requests
      FOR EACH STATEMENT EXECUTE FUNCTION fleet_requests_changed();
    )sql",
    // 5: accelerators in maintenance are never claimed.
    kClaimFunction,
};
const int kFleetSchemaVersion = static_cast<int>(std::size(kMigrations));

// Every accelerator of a JSON array [{"seq": n, "r": record}, ...], over an
// older change of it from this host ($1 host, $2 epoch, $3 the array).
constexpr const char* kUpsert = R"sql(
    INSERT INTO fleet_accelerators AS f (uuid, host, name, device_type, acc_type, vendor_id, product_id, status,
                                         attach, attach_handle, driver, record, removed, epoch, seq)
    SELECT (c.r->>'uuid')::uuid, $1, c.r->>'name', c.r->>'device_type', c.r->>'acc_type', c.r->>'vendor_id',
           c.r->>'product_id', c.r->>'status', c.r->>'attach', coalesce(c.r->>'attach_handle', ''),
           coalesce(c.r->>'driver', ''), c.r, false, $2::bigint, c.seq
    FROM jsonb_to_recordset($3::jsonb) AS c(seq bigint, r jsonb)
    ON CONFLICT (uuid) DO UPDATE SET
      name = EXCLUDED.name, device_type = EXCLUDED.device_type, acc_type = EXCLUDED.acc_type,
      vendor_id = EXCLUDED.vendor_id, product_id = EXCLUDED.product_id, status = EXCLUDED.status,
      attach = EXCLUDED.attach, attach_handle = EXCLUDED.attach_handle, driver = EXCLUDED.driver,
      record = EXCLUDED.record, removed = false, epoch = EXCLUDED.epoch, seq = EXCLUDED.seq,
      revision = nextval('fleet_revision'), updated_at = now()
    WHERE f.host = EXCLUDED.host AND (f.epoch, f.seq) < (EXCLUDED.epoch, EXCLUDED.seq)
    )sql";

// The accelerators of [{"seq": n, "uuid": u}, ...] removed from this host.
constexpr const char* kRemove = R"sql(
    UPDATE fleet_accelerators AS f
    SET removed = true, epoch = $2::bigint, seq = c.seq, revision = nextval('fleet_revision'), updated_at = now()
    FROM jsonb_to_recordset($3::jsonb) AS c(seq bigint, uuid uuid)
    WHERE f.uuid = c.uuid AND f.host = $1 AND NOT f.removed AND (f.epoch, f.seq) < ($2::bigint, c.seq)
    )sql";

constexpr auto kRefusedRetry = std::chrono::seconds(60);
std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id.empty() ? "unknown" : id;
}

std::string Lease(std::chrono::seconds lease) { return std::to_string(lease.count()); }

// A Status that ends a session without retrying soon (fenced, schema newer).
Status Refusal(std::string message) { return Status::NotPermitted(std::move(message)); }

}  // namespace

// One publication: the JSON arrays kUpsert and kRemove take, and the number
// of the last change in them.
struct Publisher::Batch {
  std::string upserts = "[", removals = "[";
  int64_t last_seq = 0;

  // Accelerator `uuid` as of change `seq`: its row, or none if removed.
  void Add(const std::string& uuid, int64_t seq, const Accelerator* now) {
    std::string& array = now ? upserts : removals;
    array += array.size() > 1 ? ",{\"seq\":" : "{\"seq\":";
    array += std::to_string(seq);
    array += now ? ",\"r\":" + RecordText(*now) + "}" : ",\"uuid\":\"" + uuid + "\"}";
    last_seq = std::max(last_seq, seq);
  }
  void Close() {
    upserts += "]";
    removals += "]";
  }
};

namespace {}  // namespace

Publisher::Publisher(Service& service, Store& store, Options options)
    : service_(service), store_(store), options_(std::move(options)), server_(Postgres::Describe(options_.conninfo)) {
  service_.AddListener(this, [this](const Service::Snapshot&, const Service::Snapshot&) { Wake(); });
  service_.AddReport("fleet", [this] { return Report(); });
}

Status Publisher::Prepare() {
  std::mt19937_64 random{std::random_device{}()};
  const int64_t start_id = static_cast<int64_t>(random() >> 1) + 1;  // positive
  auto started = store_.StartOutbox(start_id, UnixNow());
  if (!started.ok()) return started.status();
  epoch_ = started->epoch;
  start_id_ = started->start_id;
  lineage_ = "{";
  for (int64_t id : started->lineage) lineage_ += (lineage_.size() > 1 ? "," : "") + std::to_string(id);
  lineage_ += "}";
  boot_id_ = BootId();
  return Status::Ok();
}

void Publisher::Start() {
  {
    std::lock_guard lock(mu_);
    failing_since_ = UnixNow();
  }
  thread_ = std::thread([this] { Run(); });
}

void Publisher::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Publisher::Stopping() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

// On the changing thread: a futex wake only when the publisher waits for a
// change (not while it publishes or pauses), so that a burst of changes
// costs the writers no context switches.
void Publisher::Wake() {
  bool waiting;
  {
    std::lock_guard lock(mu_);
    changed_ = true;
    waiting = awaiting_change_;
  }
  if (waiting) cv_.notify_all();
}

void Publisher::Wait(std::chrono::steady_clock::time_point until, bool on_change) {
  std::unique_lock lock(mu_);
  awaiting_change_ = on_change;
  cv_.wait_until(lock, until, [&] { return stopping_ || (on_change && changed_); });
  awaiting_change_ = false;
}

Json Publisher::Report() const {
  const uint64_t waiting = store_.OutboxDepth();
  std::lock_guard lock(mu_);
  Json problems = Json::array();
  if (state_ == "degraded") {  // the count as it is now
    problems.push_back(std::string(connected_ ? "publishing fails" : "PostgreSQL unreachable") + " since " +
                       UtcTime(failing_since_) + ": " + std::to_string(waiting) + " changes waiting (" + problem_ +
                       ")");
  } else if (state_ == "failed") {
    problems.push_back(problem_);
  }
  return Json{{"state", state_},
              {"server", server_},
              {"host", options_.host},
              {"epoch", epoch_},
              {"outbox", waiting},
              {"published_at", published_at_ ? Json(published_at_) : Json(nullptr)},
              {"connected_since", connected_since_ ? Json(connected_since_) : Json(nullptr)},
              {"resync_ms", resync_ms_ >= 0 ? Json(resync_ms_) : Json(nullptr)},
              {"problems", problems}};
}

void Publisher::Note(const char* state, const std::string& problem) {
  std::lock_guard lock(mu_);
  state_ = state;
  problem_ = problem;
  if (state_ == "ok") {
    failing_since_ = 0;
    connected_since_ = UnixNow();
  } else {
    connected_since_ = 0;
    if (!failing_since_) failing_since_ = UnixNow();
  }
}

void Publisher::Run() {
  auto retry = std::chrono::milliseconds(kFirstRetry);
  std::string last_problem;
  while (!Stopping()) {
    Status why;
    served_ = false;
    const Outcome outcome = Session(why);
    if (served_) retry = kFirstRetry;
    if (outcome == Outcome::kStopped) break;
    const uint64_t waiting = store_.OutboxDepth();
    if (outcome == Outcome::kRefused) {
      Note("failed", why.message() + "; publishing stopped, local work goes on");
      if (why.message() != last_problem)
        spdlog::error("fleet: {}; publishing stopped, local work goes on", why.message());
      last_problem = why.message();
      Wait(std::chrono::steady_clock::now() + kRefusedRetry, false);
      continue;
    }
    Note("degraded", why.message());
    if (why.message() != last_problem) {
      spdlog::warn("fleet: {}: {} changes waiting; trying again", why.message(), waiting);
    }
    last_problem = why.message();
    const auto wait = Jittered(retry);
    Wait(std::chrono::steady_clock::now() + wait, false);
    retry = std::min<std::chrono::milliseconds>(retry * 2, kLastRetry);
  }
}

Publisher::Outcome Publisher::Session(Status& why) {
  auto db = Postgres::Connect(options_.conninfo, "cyborgfs " + options_.host);
  {
    std::lock_guard lock(mu_);
    connected_ = db.ok();
  }
  if (!db.ok()) {
    why = db.status();
    return Outcome::kFailed;
  }
  for (auto step : {&Publisher::Migrate, &Publisher::Register, &Publisher::Resync}) {
    if (Status s = (this->*step)(**db); !s.ok()) {
      why = s;
      return s.code() == Code::kNotPermitted ? Outcome::kRefused : Outcome::kFailed;
    }
  }
  Note("ok", "");
  served_ = true;
  spdlog::info("fleet: publishing to PostgreSQL ({}) as host {}, epoch {}", server_, options_.host, epoch_);
  const auto renew_every = std::max<std::chrono::milliseconds>(options_.lease / 3, std::chrono::milliseconds(300));
  auto now = std::chrono::steady_clock::now();
  auto next_renew = now + renew_every;
  auto next_resync = now + Jittered(kResyncEvery);
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return Outcome::kStopped;
      changed_ = false;
    }
    Status s = Drain(**db);
    now = std::chrono::steady_clock::now();
    if (s.ok() && now >= next_renew) {
      s = Renew(**db);
      next_renew = now + renew_every;
    }
    if (s.ok() && now >= next_resync) {
      s = Resync(**db);
      next_resync = now + Jittered(kResyncEvery);
    }
    if (!s.ok()) {
      why = s;
      return s.code() == Code::kNotPermitted ? Outcome::kRefused : Outcome::kFailed;
    }
    // Changes coming faster than kPublishAtMostEvery are published together.
    Wait(std::chrono::steady_clock::now() + kPublishAtMostEvery, false);
    Wait(std::min(next_renew, next_resync), true);
  }
}

Status Publisher::Migrate(Postgres& db) {
  Transaction t(db);
  if (Status s = t.Begin(); !s.ok()) return s;
  // One host migrates at a time; the others wait here, then find it done.
  for (const char* sql : {"SELECT pg_advisory_xact_lock(hashtext('cyborgfs fleet schema'))",
                          "CREATE TABLE IF NOT EXISTS cyborgfs_schema (only_row boolean PRIMARY KEY DEFAULT true "
                          "CHECK (only_row), version integer NOT NULL)",
                          "INSERT INTO cyborgfs_schema (version) VALUES (0) ON CONFLICT DO NOTHING"}) {
    if (auto done = db.Exec(sql); !done.ok()) return done.status().Prefixed("migrating the fleet's schema");
  }
  auto version = db.Exec("SELECT version FROM cyborgfs_schema");
  if (!version.ok() || version->empty() || !version->front()[0]) {
    return Status::IoError("cannot read the fleet's schema version");
  }
  const int found = std::stoi(*version->front()[0]);
  if (found > kFleetSchemaVersion) {
    return Refusal("the fleet's schema is version " + std::to_string(found) + ", newer than this cyborgfs knows (" +
                   std::to_string(kFleetSchemaVersion) + "): upgrade cyborgfs");
  }
  for (int v = found; v < kFleetSchemaVersion; ++v) {
    if (auto done = db.Exec(kMigrations[v]); !done.ok()) {
      return done.status().Prefixed("migrating the fleet's schema to version " + std::to_string(v + 1));
    }
  }
  if (found < kFleetSchemaVersion) {
    auto set = db.Exec("UPDATE cyborgfs_schema SET version = $1", {std::to_string(kFleetSchemaVersion)});
    if (!set.ok()) return set.status();
    spdlog::info("fleet: schema migrated from version {} to {}", found, kFleetSchemaVersion);
  }
  return t.Commit();
}

// The host's row is taken over only from a start of this file's lineage: a
// copy of the file made before the row's start does not know it.
Status Publisher::Register(Postgres& db) {
  auto registered = db.Exec(
      "INSERT INTO fleet_hosts AS h (name, epoch, start_id, boot_id, lease_expires_at) "
      "VALUES ($1, $2::bigint, $3::bigint, $4, now() + make_interval(secs => $5::bigint)) "
      "ON CONFLICT (name) DO UPDATE SET epoch = EXCLUDED.epoch, start_id = EXCLUDED.start_id, "
      "boot_id = EXCLUDED.boot_id, lease_expires_at = EXCLUDED.lease_expires_at "
      "WHERE h.start_id = ANY($6::bigint[]) RETURNING 1",
      {options_.host, std::to_string(epoch_), std::to_string(start_id_), boot_id_, Lease(options_.lease), lineage_});
  if (!registered.ok()) return registered.status();
  if (!registered->empty()) return Status::Ok();
  return CheckStart(db);  // says by whom it is fenced
}

Status Publisher::CheckStart(Postgres& db) {
  auto row = db.Exec("SELECT start_id, epoch, boot_id FROM fleet_hosts WHERE name = $1 FOR UPDATE", {options_.host});
  if (!row.ok()) return row.status();
  if (row->empty()) return Status::IoError("the fleet has no row for host " + options_.host + " (deleted?)");
  if (row->front()[0].value_or("") == std::to_string(start_id_)) return Status::Ok();
  return Refusal("fenced: host " + options_.host + " is published by a start this database does not know (epoch " +
                 row->front()[1].value_or("?") + ", boot " + row->front()[2].value_or("?") + "; this one is epoch " +
                 std::to_string(epoch_) +
                 "): this database is an older copy (a restored backup, a cloned image?) or another daemon runs "
                 "as this host, and the fleet keeps its state; to publish from this one anyway: DELETE FROM "
                 "fleet_hosts WHERE name = '" +
                 options_.host + "'");
}

Status Publisher::Publish(Postgres& db, const Batch& batch, const std::string* whole) {
  const std::string host = options_.host, epoch = std::to_string(epoch_);
  Transaction t(db);
  if (Status s = t.Begin(); !s.ok()) return s;
  if (Status s = CheckStart(db); !s.ok()) return s;
  auto done = db.Exec(kUpsert, {host, epoch, batch.upserts});
  if (done.ok()) done = db.Exec(kRemove, {host, epoch, batch.removals});
  if (done.ok() && whole) {
    // Removed, as a removal is: readers catching up by revision see it go.
    done = db.Exec(
        "UPDATE fleet_accelerators SET removed = true, revision = nextval('fleet_revision'), updated_at = now() "
        "WHERE host = $1 AND NOT removed AND NOT (uuid = ANY($2::uuid[]))",
        {host, *whole});
    // Readers have seen those removed a day ago (or read everything since).
    if (done.ok()) {
      done = db.Exec(
          "DELETE FROM fleet_accelerators WHERE host = $1 AND removed AND updated_at < now() - interval '1 day'",
          {host});
    }
  }
  if (done.ok()) {
    done = db.Exec(
        "UPDATE fleet_hosts SET last_seq = greatest(last_seq, $2::bigint), "
        "lease_expires_at = now() + make_interval(secs => $3::bigint), resyncs = resyncs + $4::bigint, "
        "resynced_at = CASE WHEN $4::bigint = 1 THEN now() ELSE resynced_at END WHERE name = $1",
        {host, std::to_string(batch.last_seq), Lease(options_.lease), whole ? "1" : "0"});
  }
  if (done.ok()) done = db.Exec("SELECT pg_notify('cyborgfs_fleet', $1)", {host});
  if (!done.ok()) return done.status();
  if (Status s = t.Commit(); !s.ok()) return s;
  std::lock_guard lock(mu_);
  published_at_ = UnixNow();
  return Status::Ok();
}

Status Publisher::Resync(Postgres& db) {
  const auto began = std::chrono::steady_clock::now();
  auto inventory = store_.ReadInventory();
  if (!inventory.ok()) return inventory.status();
  Batch batch;
  std::string uuids = "{";
  for (const Accelerator& a : inventory->accelerators) {
    batch.Add(a.uuid, inventory->seq, &a);
    uuids += (uuids.size() > 1 ? "," : "") + a.uuid;
  }
  batch.Close();
  batch.last_seq = inventory->seq;  // also with no accelerator
  uuids += "}";
  if (Status s = Publish(db, batch, &uuids); !s.ok()) return s;
  {
    std::lock_guard lock(mu_);
    resync_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - began).count();
  }
  spdlog::debug("fleet: published the whole inventory ({} accelerators, up to change {})",
                inventory->accelerators.size(), inventory->seq);
  return store_.Published({}, inventory->seq);
}

Status Publisher::Drain(Postgres& db) {
  for (;;) {
    auto pending = store_.PendingChanges(kBatch);
    if (!pending.ok()) return pending.status();
    if (pending->empty()) return Status::Ok();
    Batch batch;
    std::vector<std::pair<std::string, int64_t>> sent;
    for (const Store::Pending& p : *pending) {
      batch.Add(p.uuid, p.seq, p.now ? &*p.now : nullptr);
      sent.emplace_back(p.uuid, p.seq);
    }
    batch.Close();
    if (Status s = Publish(db, batch, nullptr); !s.ok()) return s;
    if (Status s = store_.Published(sent); !s.ok()) return s;
    if (pending->size() < kBatch) return Status::Ok();
  }
}

Status Publisher::Renew(Postgres& db) {
  auto renewed = db.Exec(
      "UPDATE fleet_hosts SET lease_expires_at = now() + make_interval(secs => $3::bigint) "
      "WHERE name = $1 AND start_id = $2::bigint RETURNING 1",
      {options_.host, std::to_string(start_id_), Lease(options_.lease)});
  if (!renewed.ok()) return renewed.status();
  if (!renewed->empty()) return Status::Ok();
  return CheckStart(db);
}

}  // namespace cyborgfs::fleet
