// cyborgfs: wires the store, the drivers, the service and the FUSE adapter,
// mounts, and serves until unmounted or signalled.
//
// Everything that can fail on bad input (options, mountpoint, database,
// drivers) is checked before mounting, and reported as one line on stderr
// with a non-zero exit. Once the mount is live the parent exits 0 (unless
// --foreground); SIGINT, SIGTERM and `fusermount3 -u` unmount and exit 0.
// With $NOTIFY_SOCKET (systemd's Type=notify) it reports READY=1 once the
// mount is live and STOPPING=1 when it stops serving; SIGHUP rereads the
// config file (Signals). --check does everything before mounting, then exits.
#include <fuse_lowlevel.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>

#include "api.h"
#include "binder.h"
#include "client.h"
#include "cyborgfs/drivers.h"
#include "cyborgfs/service.h"
#include "cyborgfs/store.h"
#include "filesystem.h"
#include "fleet_reader.h"
#include "logging.h"
#include "mountpoint.h"
#include "options.h"
#include "publisher.h"
#include "requests.h"
#include "uevents.h"

namespace cyborgfs::app {
namespace {

// One line on stderr; the exit status: 1 (cannot serve) unless told kUsageError.
int Fail(const std::string& message, int code = 1) {
  std::cerr << "cyborgfs: " << message << "\n";
  return code;
}

std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

// The gid of --admin-group (a name, or a number that needs no name); the
// daemon's own group when none is given.
Result<gid_t> AdminGroup(const std::string& group) {
  if (group.empty()) return getegid();
  if (const struct group* g = getgrnam(group.c_str())) return g->gr_gid;
  char* end = nullptr;
  const unsigned long number = std::strtoul(group.c_str(), &end, 10);
  if (*end == '\0' && std::isdigit(static_cast<unsigned char>(group[0])) && number < 0xffffffffUL) {
    return static_cast<gid_t>(number);
  }
  return Status::NotFound("--admin-group: no group named " + group);
}

// The database path made absolute (the daemon changes to / when it detaches);
// the default folder is created, a folder the user named must exist.
Result<std::string> DatabasePath(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  if (path == kDefaultDatabase) std::filesystem::create_directories(absolute.parent_path(), ec);
  if (!std::filesystem::is_directory(absolute.parent_path())) {
    return Status::IoError("cannot open database " + path + ": folder " + absolute.parent_path().string() +
                           " does not exist");
  }
  return absolute.string();
}

// The token of --api-token-file: its content without trailing whitespace. A
// file others may read, or a token shorter than 16 bytes, is refused.
Result<std::string> ApiToken(const std::string& path) {
  std::ifstream file(path);
  struct stat st {};
  if (!file || ::stat(path.c_str(), &st) != 0) {
    return Status::NotFound("--api-token-file: cannot read " + path + ": " + std::strerror(errno));
  }
  if (st.st_mode & S_IROTH) {
    return Status::AccessDenied("--api-token-file: " + path + " is readable by everyone: chmod o-r " + path);
  }
  std::string token((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.size() < 16 || token.find_first_of(" \t\r\n") != std::string::npos) {
    return Status::Invalid("--api-token-file: " + path +
                           " must hold one token of at least 16 characters (openssl rand -hex 32 makes one)");
  }
  return token;
}

// The REST API's listening sockets (before the fork; served from Start).
Status ListenApi(api::HttpServer& http, const Options& options) {
  if (options.api_socket != "none") {
    if (Status s = http.ListenUnix(std::filesystem::absolute(options.api_socket).string()); !s.ok()) return s;
  }
  if (!options.api_listen.empty()) return http.ListenTcp(options.api_listen);
  return Status::Ok();
}

// Lets the daemon hold as many descriptors as it may: each API connection
// takes one (the soft limit is often 1 024; LimitNOFILE= sets the hard one).
void RaiseDescriptorLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// The FUSE command line for `options`. libfuse may grow and free the argument
// vector, so it owns it: release it with fuse_opt_free_args.
fuse_args FuseArgs(const Options& options, const std::string& database) {
  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  // The mount's source is the database (see mountpoint.h). libfuse reads a
  // backslash as an escape and a comma as the next option.
  std::string source;
  for (char c : database) source += (c == ',' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  std::vector<std::string> words = {"cyborgfs", "-o", "subtype=cyborgfs", "-o", "fsname=" + source};
  // Policy is owner/group/mode, checked by the kernel for every caller; as
  // root the mount is for everyone (others may read).
  words.insert(words.end(), {"-o", geteuid() == 0 ? "default_permissions,allow_other" : "default_permissions"});
  for (const std::string& o : options.mount_options) words.insert(words.end(), {"-o", o});
  for (const std::string& w : words) fuse_opt_add_arg(&args, w.c_str());
  return args;
}

// True when libfuse accepts the -o options; it prints what it refuses.
bool MountOptionsValid(const Options& options) {
  fuse_args args = FuseArgs(options, "");
  const fuse_lowlevel_ops no_operations{};
  fuse_session* session = fuse_session_new(&args, &no_operations, sizeof no_operations, nullptr);
  fuse_opt_free_args(&args);
  if (session) fuse_session_destroy(session);
  return session != nullptr;
}

// How often the database's write-ahead log is folded back (when there were
// commits): it stays small, even on a nearly full disk.
constexpr auto kCheckpointInterval = std::chrono::seconds(1);

// libfuse's worker threads at most (its default is 10). A write may wait for
// the notifier, which may wait for a lookup in flight: that lookup needs a
// free worker.
constexpr unsigned kMaxWorkers = 64;

// The signals a user sends, taken by a thread of their own with sigwait(2);
// every other thread blocks them (BlockSignals, before any thread starts).
//
// SIGHUP rereads the command line and the config file and applies what can
// change while serving: the log level, the audit file (reopened: logrotate),
// the rescan interval.
//
// SIGTERM and SIGINT end the FUSE loop: its exit flag is set, then the
// loop's thread is interrupted (SIGUSR1, whose handler does nothing) until
// the loop has returned. libfuse's own handler only sets the flag and counts
// on the signal interrupting the loop's wait, which a signal that lands just
// before the wait begins does not: the loop then slept until the next
// request (seen in CI: a SIGTERM right after the start, no exit in 15 s).
class Signals {
 public:
  Signals(int argc, char** argv, Service& service, const Options& options)
      : argc_(argc), argv_(argv), service_(service), options_(options) {}
  ~Signals() { Stop(); }

  static void BlockSignals() {
    const sigset_t set = Taken();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
  // From the thread that runs `session`'s loop (it must not block SIGUSR1).
  void Start(fuse_session* session) {
    session_ = session;
    loop_thread_ = pthread_self();
    struct sigaction nothing {};
    nothing.sa_handler = [](int) {};
    sigemptyset(&nothing.sa_mask);
    sigaction(SIGUSR1, &nothing, nullptr);  // no SA_RESTART: the loop's wait is interrupted
    thread_ = std::thread([this] { Run(); });
  }
  // Once the loop has returned.
  void Stop() {
    if (!thread_.joinable()) return;
    stopping_ = true;
    pthread_kill(thread_.native_handle(), SIGHUP);
    thread_.join();
  }

 private:
  static sigset_t Taken() {
    sigset_t set;
    sigemptyset(&set);
    for (int signal : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&set, signal);
    return set;
  }
  void Run() {
    const sigset_t set = Taken();
    for (int signal = 0; sigwait(&set, &signal) == 0 && !stopping_;) {
      if (signal == SIGHUP) {
        Reload();
        continue;
      }
      spdlog::info("{}: unmounting", signal == SIGTERM ? "SIGTERM" : "SIGINT");
      fuse_session_exit(session_);
      while (!stopping_) {
        pthread_kill(loop_thread_, SIGUSR1);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      return;
    }
  }
  void Reload() {
    sd_notify(0, "RELOADING=1");
    int exit_code = -1;
    const Options next = ParseOptions(argc_, argv_, exit_code);
    if (exit_code >= 0) {
      spdlog::error("SIGHUP: the options or the config file are wrong (see above); nothing changed");
    } else {
      spdlog::info("SIGHUP: reloading: log level {}, log file {}, audit log {}, rescan interval {} s", next.log_level,
                   next.log_file.empty() ? "as at start" : next.log_file,
                   next.audit_log.empty() ? "none" : next.audit_log, next.rescan_interval);
      if (Status s = ApplyLogOptions(next); !s.ok()) spdlog::error("SIGHUP: {}", s.message());
      if (next.rescan_interval != options_.rescan_interval) {
        service_.StopRescans();
        service_.StartRescans(std::chrono::seconds(next.rescan_interval));
      }
      options_ = next;
    }
    sd_notify(0, "READY=1");
  }

  const int argc_;
  char** const argv_;
  Service& service_;
  Options options_;
  fuse_session* session_ = nullptr;
  pthread_t loop_thread_{};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// The fleet's threads (--fleet), or none.
struct FleetParts {
  fleet::Publisher* publisher = nullptr;
  fleet::FleetReader* reader = nullptr;
  fleet::Binder* binder = nullptr;
};

// Mounts `fs` on `mountpoint` and serves requests until unmounted or
// signalled. Returns the process exit code.
int Serve(fs::Filesystem& fs, Service& service, Store& store, Signals& signals, api::HttpServer* http, FleetParts fleet,
          const Options& options, const std::string& mountpoint, const std::string& database,
          const std::string& logging_to) {
  fuse_args args = FuseArgs(options, database);
  fuse_session* session = fuse_session_new(&args, &fs::Filesystem::Operations(), sizeof(fuse_lowlevel_ops), &fs);
  fuse_opt_free_args(&args);
  if (!session) return 2;  // libfuse has printed which option it refused
  int code = 1;
  if (fuse_set_signal_handlers(session) != 0) {
    Fail("cannot install signal handlers");
  } else if (fuse_session_mount(session, mountpoint.c_str()) != 0) {
    Fail("cannot mount on " + mountpoint);
  } else {
    spdlog::info("mounted on {}", mountpoint);
    if (!options.foreground)
      std::cerr << "cyborgfs: mounted on " << mountpoint << "; the log goes to " << logging_to << "\n";
    fuse_daemonize(options.foreground ? 1 : 0);
    fs.Mounted(session);  // threads only after the fork
    service.StartRescans(std::chrono::seconds(options.rescan_interval));
    // With the pci driver: a PCI hotplug event rescans at once.
    UeventListener uevents(service, std::chrono::seconds(options.rescan_interval));
    if (service.HasDriver("pci")) uevents.Start();
    store.StartCheckpoints(kCheckpointInterval);
    if (fleet.publisher) fleet.publisher->Start();
    if (fleet.reader) fleet.reader->Start();
    if (fleet.binder) fleet.binder->Start();
    signals.Start(session);
    if (http) {
      http->Start();
      spdlog::info("serving the REST API on {}{}", options.api_socket == "none" ? "" : options.api_socket,
                   options.api_listen.empty()
                       ? ""
                       : " and TCP " + options.api_listen + " (port " + std::to_string(http->TcpPort()) + ")");
    }
    fuse_loop_config* config = fuse_loop_cfg_create();
    // Writes wait for the notifier, which may wait for lookups: keep workers free.
    fuse_loop_cfg_set_max_threads(config, kMaxWorkers);
    // The mount is live: what comes now is queued until the loop reads it.
    sd_notifyf(0, "READY=1\nSTATUS=serving %s", mountpoint.c_str());
    const int served = fuse_session_loop_mt(session, config);
    signals.Stop();  // before anything else: it interrupts this thread until the loop has returned
    sd_notify(0, "STOPPING=1");
    fuse_loop_cfg_destroy(config);
    if (http) http->Stop();  // the requests in flight are answered first
    uevents.Stop();
    service.StopRescans();
    if (fleet.publisher) fleet.publisher->Stop();  // what is not published yet stays in the outbox
    if (fleet.reader) fleet.reader->Stop();
    if (fleet.binder) fleet.binder->Stop();
    fs.Unmounting();
    code = served < 0 ? 1 : 0;  // > 0: ended by a signal, which is a clean stop
    fuse_session_unmount(session);
    spdlog::info("unmounted {}", mountpoint);
  }
  fuse_remove_signal_handlers(session);
  fuse_session_destroy(session);
  return code;
}

int Run(int argc, char** argv) {
  int exit_code = -1;
  Options options = ParseOptions(argc, argv, exit_code);
  if (exit_code >= 0) return exit_code;
  Signals::BlockSignals();
  auto database = DatabasePath(options.database);
  if (!database.ok()) return Fail(database.status().message());
  auto logging_to = SetUpLogging(options, *database);
  if (!logging_to.ok()) return Fail(logging_to.status().message());

  if (!MountOptionsValid(options)) return kUsageError;  // libfuse has said which option it refused
  auto admin_group = AdminGroup(options.admin_group);
  if (!admin_group.ok()) return Fail(admin_group.status().message(), kUsageError);
  // Absolute: the daemon changes to / when it detaches, and rescans later.
  const std::string sysfs_root = std::filesystem::absolute(options.sysfs_root).string();
  DriverOptions driver_options{options.host.empty() ? HostName() : options.host, options.fake_devices, sysfs_root,
                               options.pci_ids, options.device_table};
  auto drivers = MakeDrivers(options.drivers, driver_options);
  if (!drivers.ok()) return Fail(drivers.status().message(), kUsageError);
  auto mountpoint = AbsoluteMountpoint(options.mountpoint);
  if (!mountpoint.ok()) return Fail(mountpoint.status().message());
  std::string token;
  if (!options.api_token_file.empty()) {
    auto read = ApiToken(options.api_token_file);
    if (!read.ok()) return Fail(read.status().message(), kUsageError);
    token = *read;
  }

  // --check changes nothing but a dead mount it clears: no database is made or migrated.
  const Store::Sync sync = options.sync == "full" ? Store::Sync::kFull : Store::Sync::kNormal;
  auto open = [&] { return options.check ? Store::OpenToCheck(*database) : Store::Open(*database, sync); };
  auto store = open();
  if (!store.ok() && store.status().code() == Code::kBusy && EndStuckDaemon(*database, *mountpoint)) store = open();
  const bool database_to_come = options.check && store.status().code() == Code::kNotFound;
  if (!store.ok() && !database_to_come) return Fail(store.status().message());
  // With the database's lock held: two daemons starting together never both clear and mount.
  if (Status s = PrepareMountpoint(*mountpoint); !s.ok()) return Fail(s.message());
  if (options.check) {
    if (database_to_come) std::cout << "cyborgfs: " << store.status().message() << "\n";
    std::cout << "cyborgfs: ready to serve " << *mountpoint << " from " << *database << "\n";
    return 0;
  }
  Service service(**store, std::move(*drivers), driver_options.host);
  if (Status s = service.Start(); !s.ok()) return Fail(s.message());

  // With --fleet: the fleet's view, which fleet/ and GET /fleet/... show.
  std::unique_ptr<FleetBoard> board = options.fleet.empty() ? nullptr : std::make_unique<FleetBoard>();
  // ... and its accelerator requests.
  std::unique_ptr<fleet::Requests> requests =
      options.fleet.empty() ? nullptr : std::make_unique<fleet::Requests>(options.fleet, driver_options.host);
  fs::Filesystem fs(service, *admin_group, static_cast<size_t>(options.scratch_limit) << 20, board.get(),
                    requests.get());
  std::unique_ptr<api::Api> rest;
  std::unique_ptr<api::HttpServer> http;
  if (options.api_socket != "none" || !options.api_listen.empty()) {
    rest =
        std::make_unique<api::Api>(service, api::Api::Options{*admin_group, token, [&fs] { fs.Settle(); }, board.get(),
                                                              requests.get(), [&fs] { return fs.RequestCounts(); }});
    http = std::make_unique<api::HttpServer>([&rest](const api::Peer& peer, const httplib::Request& req,
                                                     httplib::Response& res) { rest->Handle(peer, req, res); },
                                             &api::Api::ErrorBody);
    RaiseDescriptorLimit();
    if (Status s = ListenApi(*http, options); !s.ok()) return Fail(s.message());
  }
  std::unique_ptr<fleet::Publisher> publisher;
  std::unique_ptr<fleet::FleetReader> reader;
  std::unique_ptr<fleet::Binder> binder;
  if (!options.fleet.empty()) {
    publisher = std::make_unique<fleet::Publisher>(
        service, **store,
        fleet::Publisher::Options{options.fleet, driver_options.host, std::chrono::seconds(options.fleet_lease)});
    if (Status s = publisher->Prepare(); !s.ok()) return Fail(s.message());
    reader = std::make_unique<fleet::FleetReader>(service, *board,
                                                  fleet::FleetReader::Options{options.fleet, driver_options.host});
    binder = std::make_unique<fleet::Binder>(
        service,
        fleet::Binder::Options{options.fleet, driver_options.host, std::chrono::seconds(options.fleet_bind_timeout)});
  }
  Signals signals(argc, argv, service, options);
  spdlog::info("logging to {}", *logging_to);
  return Serve(fs, service, **store, signals, http.get(), {publisher.get(), reader.get(), binder.get()}, options,
               *mountpoint, *database, *logging_to);
}

}  // namespace
}  // namespace cyborgfs::app

int main(int argc, char** argv) {
  // The daemon starts itself again as the helper of an entry lane (src/fs/entry_lane.h).
  if (argc > 1 && std::string(argv[1]) == cyborgfs::fs::EntryLane::kHelperArgument) {
    return cyborgfs::fs::RunEntryLaneHelper(argc, argv);
  }
  if (cyborgfs::app::IsClientCommand(argc, argv)) return cyborgfs::app::RunClient(argc, argv);
  return cyborgfs::app::Run(argc, argv);
}
