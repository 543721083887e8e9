// cyborgfs_bench: the same workloads on three systems, side by side, in one run.
//
//   cyborgfs_bench --bin build/cyborgfs [--sizes 10,1000,10000,100000] [--rounds 5] [--ops 2000]
//                  [--out DIR] [--rescan-sizes 100,1000,10000] [--rescans-only 1]
//                  [--api-sizes 10000,100000] [--api-only 1]
//
// For each size N it fills one SQLite file with N accelerators, then drives
//   mount  the real cyborgfs mount of that file (--drivers none),
//   tmpfs  a copy of the same files in /dev/shm (the kernel's bound),
//   rest   the REST peer bench/rest_peer.py serving GET /accelerators/{uuid}
//          from the same file (read workloads only),
// with the same in-process loops (no fork per operation). Each workload runs
// --rounds rounds of --ops operations after a warm-up, the systems taking turns
// round by round; it reports the median of the rounds' mean per-op times, the
// p50 and p99 of all operations, ops/s and the ratio to tmpfs (the median of
// the rounds' ratios, each against the tmpfs round beside it): a table on
// stdout and DIR/results.json, plus DIR/*.dat for the charts scripts/bench.sh
// draws with gnuplot; then each goal of issue 5 with its target, the measured
// figure (the worst over sizes) and by how much it is missed, if it is. Writes
// run twice: with --sync normal and with --sync full. Last, the core alone
// (no mount): a start that adopts N fake devices and a rescan that finds
// nothing to change, at each --rescan-sizes, with the time per device and
// its growth from the smallest size to the largest. Then the REST API (issue
// 13), at each --api-sizes and in two placements (the client and the
// servers on one CPU, then on two: the daemon, the REST peer and the echo on
// another CPU than the client): GET /accelerators/{uuid} over the unix socket
// with keep-alive beside the REST peer, the daemon's own TCP port and a bare
// echo (the floor of that placement), GET /accelerators whole, attach+detach
// over HTTP beside the same through the attach file, and the daemon's
// resident memory. Not a test: it asserts nothing, it measures.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cyborgfs/drivers.h"
#include "cyborgfs/service.h"
#include "cyborgfs/store.h"
#include "cyborgfs/values.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string bin = "build/cyborgfs";
  std::string peer = "bench/rest_peer.py";
  std::vector<int> sizes = {10, 1000, 10000, 100000};
  int rounds = 5;
  int ops = 2000;
  std::string out = "bench/results";
  std::vector<int> rescan_sizes = {100, 1000, 10000};
  bool rescans_only = false;
  std::vector<int> api_sizes = {10000, 100000};
  bool api_only = false;
};

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// What to undo if the run stops early: the daemon and the peer it started,
// newest first (a failed bench must not leave a mount or a process behind).
std::vector<std::function<void()>>& Undo() {
  static std::vector<std::function<void()>> undo;
  return undo;
}

void Die(const std::string& why) {
  std::cerr << "cyborgfs_bench: " << why << "\n";
  for (auto it = Undo().rbegin(); it != Undo().rend(); ++it) (*it)();
  std::exit(1);
}

std::string Uuid(int i) { return cyborgfs::NameBasedUuid("bench/" + std::to_string(i)); }

// A valid spec of exactly 4096 bytes, for the `cat`-like read.
std::string Spec4k() {
  std::string spec = "{\"num\": 1, \"device_type\": \"GPU\", \"pad\": \"";
  spec += std::string(4096 - spec.size() - 3, 'x') + "\"}\n";
  return spec;
}

// --- the three systems ----------------------------------------------------------

void Populate(const std::string& db, int n) {
  auto store = cyborgfs::Store::Open(db);
  if (!store.ok()) Die(store.status().message());
  cyborgfs::Status s = (*store)->InTransaction([&] {
    for (int i = 0; i < n; ++i) {
      cyborgfs::Accelerator a;
      a.uuid = Uuid(i);
      a.name = "acc-" + std::to_string(i);
      a.created_at = a.updated_at = 1764000000;
      if (i == 0) {
        a.spec_bytes = Spec4k();
        a.spec = cyborgfs::Json::parse(*a.spec_bytes).dump();
      }
      if (cyborgfs::Status st = (*store)->Insert(a); !st.ok()) return st;
    }
    return cyborgfs::Status::Ok();
  });
  if (!s.ok()) Die(s.message());
}

bool Mounted(const std::string& path) {
  std::ifstream mounts("/proc/self/mounts");
  std::string device, point, rest;
  while (mounts >> device >> point && std::getline(mounts, rest)) {
    if (point == path) return true;
  }
  return false;
}

struct Daemon {
  pid_t pid = -1;
  double start_ms = 0;
  long rss_kib = 0;  // at ready
};

long ResidentKib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

// Binds the calling thread, and the threads and processes it starts from
// now on, to `cpu` (-1: leaves it as it is). False if the kernel refused.
bool PinTo(int cpu) {
  if (cpu < 0) return true;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

// `cpu` (-1: any) is where the daemon and all its threads run.
Daemon StartDaemon(const Options& o, const std::string& db, const std::string& mnt, const char* sync = "normal",
                   std::vector<std::string> extra = {"--api-socket", "none"}, int cpu = -1) {
  Daemon d;
  const auto begin = Clock::now();
  std::vector<std::string> words = {o.bin, "-f",          "--drivers", "none",   "--db",
                                    db,    "--log-level", "error",     "--sync", sync};
  words.insert(words.end(), extra.begin(), extra.end());
  words.push_back(mnt);
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  d.pid = fork();
  if (d.pid == 0) {
    if (!PinTo(cpu)) _exit(127);
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execv(o.bin.c_str(), argv.data());
    _exit(127);
  }
  while (!Mounted(mnt)) {
    if (waitpid(d.pid, nullptr, WNOHANG) == d.pid) Die("cyborgfs exited before mounting");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  d.start_ms = Micros(Clock::now() - begin) / 1000;
  d.rss_kib = ResidentKib(d.pid);
  return d;
}

void StopDaemon(const Daemon& d, const std::string& mnt) {
  std::string command = "fusermount3 -u " + mnt;
  if (std::system(command.c_str()) != 0) kill(d.pid, SIGTERM);
  waitpid(d.pid, nullptr, 0);
}

// The files the workloads use, copied from the mount to a tmpfs folder.
void CopyTree(const std::string& mnt, const std::string& copy, int n) {
  for (int i = 0; i < n; ++i) {
    const std::string rel = "/accelerators/" + Uuid(i);
    fs::create_directories(copy + rel);
    for (const char* file : {"spec", "status", "attach", "name"}) {
      fs::copy_file(mnt + rel + "/" + file, copy + rel + "/" + file, fs::copy_options::overwrite_existing);
    }
  }
}

struct Peer {
  pid_t pid = -1;
  int port = 0;
};

Peer StartPeer(const Options& o, const std::string& db, int cpu = -1) {
  int out[2];
  if (pipe(out) != 0) Die("pipe");
  Peer p;
  p.pid = fork();
  if (p.pid == 0) {
    if (!PinTo(cpu)) _exit(127);
    dup2(out[1], 1);
    close(out[0]);
    execlp("python3", "python3", o.peer.c_str(), db.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  std::string line;  // the port, then a newline
  char c;
  while (read(out[0], &c, 1) == 1 && c != '\n') line += c;
  close(out[0]);
  p.port = std::atoi(line.c_str());
  if (p.port <= 0) Die("the REST peer did not start (it said \"" + line + "\")");
  return p;
}

// One keep-alive HTTP/1.1 connection: to a TCP port on 127.0.0.1, or a unix socket.
class HttpClient {
 public:
  explicit HttpClient(int port, std::string authorization = "") : authorization_(std::move(authorization)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      Die("connect to port " + std::to_string(port));
  }
  explicit HttpClient(const std::string& unix_path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", unix_path.c_str());
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) Die("connect to " + unix_path);
  }
  ~HttpClient() { close(fd_); }

  // GET `path`; returns the body.
  std::string Get(const std::string& path) { return Send("GET", path, ""); }

  // A request; returns the body (its status in `status`).
  std::string Send(const std::string& method, const std::string& path, const std::string& body, int* status = nullptr) {
    std::string request = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n" + authorization_;
    if (!body.empty()) {
      request += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    }
    request += "\r\n" + body;
    if (write(fd_, request.data(), request.size()) != static_cast<ssize_t>(request.size())) Die("write to a server");
    std::string data;
    size_t header_end = std::string::npos, length = 0;
    char buffer[65536];
    while (header_end == std::string::npos || data.size() < header_end + 4 + length) {
      const ssize_t got = read(fd_, buffer, sizeof buffer);
      if (got <= 0) Die("read from a server");
      data.append(buffer, static_cast<size_t>(got));
      if (header_end == std::string::npos && (header_end = data.find("\r\n\r\n")) != std::string::npos) {
        const auto at = data.find("Content-Length: ");
        length = at == std::string::npos || at > header_end ? 0 : std::stoul(data.substr(at + 16));
      }
    }
    const int code = std::atoi(data.c_str() + 9);  // "HTTP/1.1 200"
    if (status) {
      *status = code;
    } else if (code >= 400) {
      Die(method + " " + path + ": " + data.substr(0, 200));
    }
    return data.substr(header_end + 4);
  }

 private:
  int fd_ = -1;
  std::string authorization_;  // a header line, or empty
};

// --- workloads ------------------------------------------------------------------

struct Result {
  double median_us = 0, p50_us = 0, p99_us = 0, ops_per_s = 0;
  // The median over rounds of this system's mean over the first system's mean
  // in the same round (paired: taken side by side, under the same load).
  double ratio_to_first = 1;
};

// One system's operation: op(thread number, op number), run in `threads` threads.
struct Contender {
  std::string system;  // mount, tmpfs, rest
  int threads;
  std::function<void(int, int)> op;
};

// Runs each contender's op `ops` times per round (per thread), `rounds` rounds
// after a warm-up; the contenders take turns round by round, so a noisy spell
// of the machine falls on all of them alike.
std::map<std::string, Result> Measure(const Options& o, int ops, const std::vector<Contender>& contenders) {
  struct Samples {
    std::vector<double> means, all;
    double best_rate = 0;
  };
  std::vector<Samples> samples(contenders.size());
  for (const Contender& c : contenders) {
    for (int i = 0; i < std::min(ops, 100); ++i) c.op(0, i);  // warm-up
  }
  for (int r = 0; r < o.rounds; ++r) {
    for (size_t k = 0; k < contenders.size(); ++k) {
      const Contender& c = contenders[k];
      std::vector<std::vector<double>> times(static_cast<size_t>(c.threads));
      const auto begin = Clock::now();
      std::vector<std::thread> workers;
      for (int t = 0; t < c.threads; ++t) {
        workers.emplace_back([&, t] {
          auto& mine = times[static_cast<size_t>(t)];
          mine.reserve(static_cast<size_t>(ops));
          for (int i = 0; i < ops; ++i) {
            const auto start = Clock::now();
            c.op(t, i);
            mine.push_back(Micros(Clock::now() - start));
          }
        });
      }
      for (auto& w : workers) w.join();
      const double wall_us = Micros(Clock::now() - begin);
      double sum = 0;
      size_t count = 0;
      for (const auto& mine : times) {
        for (double t : mine) sum += t, samples[k].all.push_back(t), ++count;
      }
      samples[k].means.push_back(sum / static_cast<double>(count));
      samples[k].best_rate = std::max(samples[k].best_rate, static_cast<double>(count) / wall_us * 1e6);
    }
  }
  const std::vector<double> first = samples[0].means;  // in round order
  std::map<std::string, Result> results;
  for (size_t k = 0; k < contenders.size(); ++k) {
    Samples& s = samples[k];
    std::sort(s.all.begin(), s.all.end());
    Result& r = results[contenders[k].system];
    std::vector<double> ratios;
    for (size_t round = 0; round < s.means.size(); ++round) ratios.push_back(s.means[round] / first[round]);
    std::sort(ratios.begin(), ratios.end());
    r.ratio_to_first = ratios[ratios.size() / 2];
    std::sort(s.means.begin(), s.means.end());
    r.median_us = s.means[s.means.size() / 2];
    r.p50_us = s.all[s.all.size() / 2];
    r.p99_us = s.all[std::min(s.all.size() - 1, s.all.size() * 99 / 100)];
    r.ops_per_s = contenders[k].threads == 1 ? 1e6 / r.median_us : s.best_rate;
  }
  return results;
}

void StatPath(const std::string& path) {
  struct stat st {};
  stat(path.c_str(), &st);
}

void ReadFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  char buffer[8192];
  while (read(fd, buffer, sizeof buffer) > 0) {
  }
  close(fd);
}

void WriteFile(const std::string& path, const std::string& value) {
  const int fd = open(path.c_str(), O_WRONLY | O_TRUNC);
  if (fd < 0) Die("open " + path + ": " + std::strerror(errno));
  if (write(fd, value.data(), value.size()) < 0) Die("write " + path + ": " + std::strerror(errno));
  close(fd);
}

void ListFolder(const std::string& path, bool stat_each) {
  DIR* dir = opendir(path.c_str());
  if (!dir) return;
  while (dirent* entry = readdir(dir)) {
    if (stat_each && entry->d_name[0] != '.') {
      struct stat st {};
      fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW);
    }
  }
  closedir(dir);
}

struct Row {
  std::string workload;
  int size;
  std::map<std::string, Result> by_system;  // mount, tmpfs, rest
};

// What one size's run measured of the daemon itself.
struct SizeFacts {
  double start_ms = 0;
  long rss_ready_kib = 0, rss_after_kib = 0;
};

// Runs `op` on the mount and on tmpfs (and `rest` on the peer if given); one row.
Row Compare(const Options& o, const std::string& name, int n, int threads, int ops, const std::string& mnt,
            const std::string& shm, const std::function<void(const std::string&, int, int)>& op,
            const std::function<void(int)>& rest = nullptr) {
  std::vector<Contender> contenders;
  for (const char* system : {"tmpfs", "mount"}) {  // tmpfs first: the baseline of the ratios
    const std::string root = std::string(system) == "mount" ? mnt : shm;
    contenders.push_back({system, threads, [op, root](int t, int i) { op(root, t, i); }});
  }
  if (rest) contenders.push_back({"rest", 1, [rest](int, int i) { rest(i); }});
  Row row{name, n, Measure(o, ops, contenders)};
  std::cerr << "  " << name << " done\n";
  return row;
}

std::vector<Row> RunSize(const Options& o, int n, SizeFacts& facts) {
  const std::string work = fs::temp_directory_path() / ("cyborgfs-bench-" + std::to_string(getpid()));
  const std::string shm = "/dev/shm/cyborgfs-bench-" + std::to_string(getpid());
  fs::remove_all(work);
  fs::remove_all(shm);
  fs::create_directories(work + "/mnt");
  const std::string db = work + "/bench.db", mnt = work + "/mnt";
  Populate(db, n);
  Daemon daemon = StartDaemon(o, db, mnt);
  facts.start_ms = daemon.start_ms;
  facts.rss_ready_kib = daemon.rss_kib;
  Undo().push_back([&] { StopDaemon(daemon, mnt); });
  CopyTree(mnt, shm, n);
  Peer peer = StartPeer(o, db);
  Undo().push_back([&] {
    kill(peer.pid, SIGTERM);
    waitpid(peer.pid, nullptr, 0);
  });
  HttpClient http(peer.port);

  auto acc = [&](const std::string& root, int i) { return root + "/accelerators/" + Uuid(i % n); };
  auto get = [&](int i) { http.Get("/accelerators/" + Uuid(i % n)); };
  const int listing_ops = std::max(3, std::min(o.ops, 200000 / std::max(n, 1)));
  const int writes = std::max(20, o.ops / 4) / 2 * 2;  // even: every attach is detached
  const std::string vm = "vm 11111111-2222-4333-8444-555555555555\n";
  // One write per op, as a shell does it (open O_TRUNC, write, close): attach, then detach.
  auto attach_detach = [&](const std::string& r, int t, int i) { WriteFile(acc(r, t) + "/attach", i % 2 ? "\n" : vm); };
  using Op = std::function<void(const std::string&, int, int)>;
  auto one = [&](const std::string& name, int ops, const Op& op, const std::function<void(int)>& rest = nullptr) {
    return Compare(o, name, n, 1, ops, mnt, shm, op, rest);
  };
  std::vector<Row> rows;
  rows.push_back(one(
      "stat spec", o.ops, [&](const std::string& r, int, int i) { StatPath(acc(r, i) + "/spec"); }, get));
  rows.push_back(one("stat status", o.ops, [&](const std::string& r, int, int i) { StatPath(acc(r, i) + "/status"); }));
  rows.push_back(one("stat attach", o.ops, [&](const std::string& r, int, int i) { StatPath(acc(r, i) + "/attach"); }));
  rows.push_back(one("stat unknown uuid", o.ops,
                     [&](const std::string& r, int, int) { StatPath(r + "/accelerators/" + Uuid(-1)); }));
  rows.push_back(one(
      "read spec", o.ops, [&](const std::string& r, int, int i) { ReadFile(acc(r, i) + "/spec"); }, get));
  rows.push_back(one("read status", o.ops, [&](const std::string& r, int, int i) { ReadFile(acc(r, i) + "/status"); }));
  rows.push_back(one("read 4 KiB spec", o.ops, [&](const std::string& r, int, int) { ReadFile(acc(r, 0) + "/spec"); }));
  rows.push_back(one("readdir accelerators/", listing_ops,
                     [&](const std::string& r, int, int) { ListFolder(r + "/accelerators", false); }));
  rows.push_back(one("ls -l accelerators/", listing_ops,
                     [&](const std::string& r, int, int) { ListFolder(r + "/accelerators", true); }));
  rows.push_back(one("attach/detach, 1 writer", writes, attach_detach));
  if (n >= 8) rows.push_back(Compare(o, "attach/detach, 8 writers", n, 8, writes, mnt, shm, attach_detach));
  rows.push_back(Compare(o, "2 readers, read status", n, 2, o.ops, mnt, shm,
                         [&](const std::string& r, int t, int i) { ReadFile(acc(r, i + t) + "/status"); }));
  facts.rss_after_kib = ResidentKib(daemon.pid);
  for (auto it = Undo().rbegin(); it != Undo().rend(); ++it) (*it)();  // the peer, then the daemon
  Undo().clear();

  // The same writes with an fsync per commit (--sync full): group commit.
  daemon = StartDaemon(o, db, mnt, "full");
  Undo().push_back([&] { StopDaemon(daemon, mnt); });
  rows.push_back(one("attach/detach, 1 writer, full", writes, attach_detach));
  if (n >= 8) rows.push_back(Compare(o, "attach/detach, 8 writers, full", n, 8, writes, mnt, shm, attach_detach));
  for (auto it = Undo().rbegin(); it != Undo().rend(); ++it) (*it)();
  Undo().clear();
  fs::remove_all(shm);
  fs::remove_all(work);
  return rows;
}

std::string Machine() {
  utsname u{};
  uname(&u);
  std::string cpu = "unknown CPU";
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  long mem_kib = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  meminfo >> key >> mem_kib;
  return std::string(u.sysname) + " " + u.release + ", " + std::to_string(std::thread::hardware_concurrency()) +
         " CPUs (" + cpu + "), " + std::to_string(mem_kib / 1024 / 1024) + " GiB";
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--bin") {
      o.bin = value;
    } else if (flag == "--peer") {
      o.peer = value;
    } else if (flag == "--rounds") {
      o.rounds = std::max(1, std::stoi(value));
    } else if (flag == "--ops") {
      o.ops = std::max(10, std::stoi(value));
    } else if (flag == "--out") {
      o.out = value;
    } else if (flag == "--sizes" || flag == "--rescan-sizes" || flag == "--api-sizes") {
      std::vector<int>& sizes = flag == "--sizes" ? o.sizes : flag == "--api-sizes" ? o.api_sizes : o.rescan_sizes;
      sizes.clear();
      std::stringstream list(value);
      for (std::string n; std::getline(list, n, ',');) sizes.push_back(std::stoi(n));
    } else if (flag == "--rescans-only") {
      o.rescans_only = value == "1";
    } else if (flag == "--api-only") {
      o.api_only = value == "1";
    } else {
      Die("unknown option " + flag);
    }
  }
  return o;
}

// --- goals (issue 5) ----------------------------------------------------------

using Runs = std::map<int, std::map<std::string, Row>>;  // size -> workload -> row

struct Goal {
  std::string what;
  double target;
  bool at_most;  // the measured figure must be <= target (else >=)
  double measured = 0;
  std::string where;  // which workload and size gave the figure
  bool found = false;
};

// Keeps the worst figure: the largest for an at-most goal, the smallest otherwise.
void Consider(Goal& g, double value, const std::string& where) {
  if (!g.found || (g.at_most ? value > g.measured : value < g.measured)) {
    g.measured = value;
    g.where = where;
    g.found = true;
  }
}

double Ratio(const Row& r) { return r.by_system.at("mount").ratio_to_first; }

std::vector<Goal> Goals(const Runs& runs, const std::map<int, SizeFacts>& facts) {
  Goal stat{"warm stat of any file, x tmpfs", 1.3, true},
      read{"warm open+read+close of spec/status, x tmpfs", 1.5, true},
      ls{"ls -l accelerators/ at 10 000, x tmpfs", 1.2, true}, unknown{"stat of an unknown uuid, x tmpfs", 1.0, true},
      rest{"warm read vs the REST peer's GET, x faster", 30, false},
      write{"attach or detach, 1 writer, --sync normal, p50 us", 100, true},
      group{"8 writers vs 1 writer, --sync full, x throughput", 4, false},
      flat{"per-op time, largest vs smallest size, x", 1.2, true},
      flat_vs_tmpfs{"x tmpfs, largest vs smallest size, x (growth of its own)", 1.2, true},
      start{"start to ready, ms", 1000, true}, rss{"resident memory after the workloads, MiB", 64, true},
      readers{"2 concurrent readers, aggregate x tmpfs", 0.7, false};
  for (const auto& [n, rows] : runs) {
    const std::string at = " at " + std::to_string(n);
    for (const auto& [name, row] : rows) {
      if (name.rfind("stat ", 0) == 0 && name != "stat unknown uuid") Consider(stat, Ratio(row), name + at);
      if (name == "read spec" || name == "read status") Consider(read, Ratio(row), name + at);
      if (name == "ls -l accelerators/" && n == 10000) Consider(ls, Ratio(row), name + at);
      if (name == "stat unknown uuid") Consider(unknown, Ratio(row), name + at);
      if (name == "read spec") {
        Consider(rest, row.by_system.at("rest").median_us / row.by_system.at("mount").median_us, name + at);
      }
      if (name == "attach/detach, 1 writer") Consider(write, row.by_system.at("mount").p50_us, name + at);
      if (name == "2 readers, read status") {
        Consider(readers, row.by_system.at("mount").ops_per_s / row.by_system.at("tmpfs").ops_per_s, name + at);
      }
    }
    auto single = rows.find("attach/detach, 1 writer, full"), eight = rows.find("attach/detach, 8 writers, full");
    if (single != rows.end() && eight != rows.end()) {
      Consider(group, eight->second.by_system.at("mount").ops_per_s / single->second.by_system.at("mount").ops_per_s,
               "full" + at);
    }
    Consider(start, facts.at(n).start_ms, "N=" + std::to_string(n));
    Consider(rss, static_cast<double>(facts.at(n).rss_after_kib) / 1024, "N=" + std::to_string(n));
  }
  if (runs.size() > 1) {  // listings are compared per entry
    const auto& [small_n, small] = *runs.begin();
    const auto& [large_n, large] = *runs.rbegin();
    for (const auto& [name, row] : large) {
      auto before = small.find(name);
      if (before == small.end()) continue;
      const bool listing = name.find("accelerators/") != std::string::npos;
      const double now = row.by_system.at("mount").median_us / (listing ? large_n : 1);
      const double then = before->second.by_system.at("mount").median_us / (listing ? small_n : 1);
      Consider(flat, now / then, name + (listing ? " (per entry)" : ""));
      Consider(flat_vs_tmpfs, Ratio(row) / Ratio(before->second), name);
    }
  }
  std::vector<Goal> goals;
  for (Goal* g : {&stat, &read, &ls, &unknown, &rest, &write, &group, &flat, &flat_vs_tmpfs, &start, &rss, &readers}) {
    if (g->found) goals.push_back(*g);
  }
  return goals;
}

void PrintGoals(const std::vector<Goal>& goals, cyborgfs::Json& report) {
  std::printf("\n%-58s %8s %10s  %-12s %s\n", "goal", "target", "measured", "verdict", "worst case");
  for (const Goal& g : goals) {
    const bool met = g.at_most ? g.measured <= g.target : g.measured >= g.target;
    const double by = g.at_most ? g.measured / g.target : g.target / g.measured;
    char verdict[64];
    if (met) {
      std::snprintf(verdict, sizeof verdict, "met");
    } else {
      std::snprintf(verdict, sizeof verdict, "missed %.2fx", by);
    }
    std::printf("%-58s %2s%6.2f %10.2f  %-12s %s\n", g.what.c_str(), g.at_most ? "<=" : ">=", g.target, g.measured,
                verdict, g.where.c_str());
    report["goals"].push_back({{"goal", g.what},
                               {"target", g.target},
                               {"at_most", g.at_most},
                               {"measured", g.measured},
                               {"met", met},
                               {"worst_case", g.where}});
  }
}

// --- the REST API (issue 13) ----------------------------------------------------

// A free TCP port on 127.0.0.1 (free when asked).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    Die("no free port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// The machine's floor for a request and its answer from another process: a
// child on `cpu` that waits in epoll_wait on a unix socket and answers each
// message with as many bytes as a record has, and does nothing else. No
// daemon on that CPU can answer faster here.
class EchoFloor {
 public:
  explicit EchoFloor(int cpu) {
    socketpair(AF_UNIX, SOCK_STREAM, 0, sockets_);
    child_ = fork();
    if (child_ == 0) {
      if (!PinTo(cpu)) _exit(127);
      close(sockets_[0]);
      const int ep = epoll_create1(0);
      epoll_event e{};
      e.events = EPOLLIN;
      epoll_ctl(ep, EPOLL_CTL_ADD, sockets_[1], &e);
      char buffer[4096] = {};
      for (;;) {
        epoll_event got{};
        epoll_wait(ep, &got, 1, -1);
        if (recv(sockets_[1], buffer, sizeof buffer, 0) <= 0) _exit(0);
        if (send(sockets_[1], buffer, 600, 0) <= 0) _exit(0);
      }
    }
    close(sockets_[1]);
  }
  ~EchoFloor() {
    close(sockets_[0]);
    waitpid(child_, nullptr, 0);
  }
  void RoundTrip() {
    char buffer[4096] = {};
    if (send(sockets_[0], buffer, 100, 0) != 100) Die("echo floor");
    for (size_t got = 0; got < 600;) {
      const ssize_t n = recv(sockets_[0], buffer, sizeof buffer, 0);
      if (n <= 0) Die("echo floor");
      got += static_cast<size_t>(n);
    }
  }

 private:
  int sockets_[2] = {-1, -1};
  pid_t child_ = -1;
};

double MedianOf(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Where the client and the servers run. Where a wakeup costs much more across
// CPUs than on one (a virtual machine: an idle virtual CPU is halted, and
// waking it is an exit to the host), the scheduler's choice decides most of a
// round trip; so each placement is measured on its own, with its own floor.
struct Placement {
  std::string name;
  int client_cpu;
  int server_cpu;  // the daemon, the REST peer, the echo
};

std::vector<Placement> Placements() {
  cpu_set_t set;
  CPU_ZERO(&set);
  sched_getaffinity(0, sizeof set, &set);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  std::vector<Placement> placements = {{"one CPU", cpus[0], cpus[0]}};
  if (cpus.size() > 1) placements.push_back({"two CPUs", cpus[0], cpus[1]});
  return placements;
}

// At each --api-sizes and placement: the daemon with its unix socket and a
// TCP port, the REST peer on the same file; GET one record on each, side by
// side, and the floor; the whole list; attach+detach over HTTP and through
// the file; memory.
void MeasureApi(const Options& o, cyborgfs::Json& report) {
  std::printf("\n%-50s %7s %10s %10s %10s %9s\n", "REST API (keep-alive, one client)", "N", "mean us", "p50 us",
              "p99 us", "x first");
  struct Goals {
    Goal one, peer, list, pair;
  };
  std::map<std::string, Goals> goals;
  cpu_set_t everywhere;
  CPU_ZERO(&everywhere);
  sched_getaffinity(0, sizeof everywhere, &everywhere);
  const std::string token = "bench-token-0123456789abcdef";
  for (int n : o.api_sizes) {
    const std::string work = fs::temp_directory_path() / ("cyborgfs-bench-api-" + std::to_string(getpid()));
    fs::remove_all(work);
    fs::create_directories(work + "/mnt");
    const std::string db = work + "/bench.db", mnt = work + "/mnt", sock = work + "/api.sock";
    std::ofstream(work + "/token") << token << "\n";
    fs::permissions(work + "/token", fs::perms::owner_read | fs::perms::owner_write);
    Populate(db, n);
    for (const Placement& place : Placements()) {
      std::cerr << "REST API at " << n << " accelerators, " << place.name << "\n";
      const std::string where = " at " + std::to_string(n) + ", " + place.name;
      if (!goals.count(place.name)) {
        const std::string on = ", " + place.name;
        goals[place.name] = {{"GET /accelerators/{uuid}, unix socket, p50 us" + on, 50, true},
                             {"GET /accelerators/{uuid}: the REST peer's time / ours, x" + on, 2, false},
                             {"GET /accelerators at 10 000 after a change, median ms" + on, 30, true},
                             {"attach+detach over HTTP / through the file, p50 x" + on, 1.0, true}};
      }
      Goals& g = goals[place.name];
      const int port = FreePort();
      Daemon daemon = StartDaemon(o, db, mnt, "normal",
                                  {"--api-socket", sock, "--api-listen", "127.0.0.1:" + std::to_string(port),
                                   "--api-token-file", work + "/token"},
                                  place.server_cpu);
      Undo().push_back([&] { StopDaemon(daemon, mnt); });
      Peer rest = StartPeer(o, db, place.server_cpu);
      Undo().push_back([&] {
        kill(rest.pid, SIGTERM);
        waitpid(rest.pid, nullptr, 0);
      });
      // This thread and the clients Measure starts.
      if (!PinTo(place.client_cpu)) Die("cannot bind to CPU " + std::to_string(place.client_cpu));
      HttpClient unix_client(sock), tcp_client(port, "Authorization: Bearer " + token + "\r\n"), peer_client(rest.port);
      auto path = [&](int i) { return "/accelerators/" + Uuid(i % n); };
      auto print = [&](const std::string& what, const Result& r) {
        std::printf("%-50s %7d %10.2f %10.2f %10.2f %9.2f\n", (what + ", " + place.name).c_str(), n, r.median_us,
                    r.p50_us, r.p99_us, r.ratio_to_first);
        report["api"].push_back({{"workload", what},
                                 {"placement", place.name},
                                 {"size", n},
                                 {"mean_us", r.median_us},
                                 {"p50_us", r.p50_us},
                                 {"p99_us", r.p99_us},
                                 {"x_first", r.ratio_to_first}});
      };

      EchoFloor floor(place.server_cpu);
      auto gets = Measure(o, o.ops,
                          {{"unix", 1, [&](int, int i) { unix_client.Get(path(i)); }},
                           {"tcp", 1, [&](int, int i) { tcp_client.Get(path(i)); }},
                           {"peer", 1, [&](int, int i) { peer_client.Get(path(i)); }},
                           {"floor", 1, [&](int, int) { floor.RoundTrip(); }}});
      print("GET /accelerators/{uuid}, unix socket", gets["unix"]);
      print("GET /accelerators/{uuid}, TCP with the token", gets["tcp"]);
      print("GET /accelerators/{uuid}, the REST peer (Python)", gets["peer"]);
      print("the floor: a bare echo, unix socket", gets["floor"]);
      Consider(g.one, gets["unix"].p50_us, "unix socket" + where);
      Consider(g.peer, gets["peer"].ratio_to_first, "vs unix socket" + where);

      // The whole list: rendered again after a change, or as cached.
      std::vector<double> fresh, cached, file;
      const int lists = std::max(3, std::min(o.ops / 10, 2000000 / std::max(n, 1)));
      for (int r = 0; r < lists; ++r) {
        unix_client.Send("PUT", "/accelerators/" + Uuid(1 % n) + "/acc_specs",
                         "{\"acc_specs\": {\"num\": " + std::to_string(r % 7 + 1) + "}}");
        auto t = Clock::now();
        unix_client.Get("/accelerators");
        fresh.push_back(Micros(Clock::now() - t) / 1000);
        t = Clock::now();
        unix_client.Get("/accelerators");
        cached.push_back(Micros(Clock::now() - t) / 1000);
        t = Clock::now();
        ReadFile(mnt + "/accelerators.json");
        file.push_back(Micros(Clock::now() - t) / 1000);
      }
      const size_t bytes = unix_client.Get("/accelerators").size();
      std::printf(
          "%-50s %7d %10.2f ms after a change, %.2f ms unchanged, %.2f ms to read accelerators.json; %zu "
          "bytes\n",
          ("GET /accelerators (the whole list), " + place.name).c_str(), n, MedianOf(fresh), MedianOf(cached),
          MedianOf(file), bytes);
      report["api"].push_back({{"workload", "GET /accelerators"},
                               {"placement", place.name},
                               {"size", n},
                               {"after_a_change_ms", MedianOf(fresh)},
                               {"unchanged_ms", MedianOf(cached)},
                               {"accelerators_json_ms", MedianOf(file)},
                               {"bytes", bytes}});
      if (n == 10000) Consider(g.list, MedianOf(fresh), "after a change" + where);

      // attach then detach: two file writes, or two requests; on two accelerators.
      const std::string vm = "11111111-2222-4333-8444-555555555555";
      const std::string attach_file = mnt + "/accelerators/" + Uuid(2 % n) + "/attach";
      const std::string http_target = "/accelerators/" + Uuid(3 % n);
      auto pairs = Measure(o, std::max(20, o.ops / 4),
                           {{"file", 1,
                             [&](int, int) {
                               WriteFile(attach_file, "vm " + vm + "\n");
                               WriteFile(attach_file, "\n");
                             }},
                            {"http", 1, [&](int, int) {
                               unix_client.Send("PUT", http_target, "{\"instance_uuid\": \"" + vm + "\"}");
                               unix_client.Send("DELETE", http_target, "");
                             }}});
      print("attach+detach through the attach file", pairs["file"]);
      print("attach+detach over HTTP (PUT, DELETE)", pairs["http"]);
      Consider(g.pair, pairs["http"].p50_us / pairs["file"].p50_us, "p50" + where);

      const long rss = ResidentKib(daemon.pid);
      std::printf("%-50s %7d %10.1f MiB resident after the above (%.1f MiB at ready)\n",
                  ("daemon, " + place.name).c_str(), n, static_cast<double>(rss) / 1024,
                  static_cast<double>(daemon.rss_kib) / 1024);
      report["api"].push_back({{"workload", "resident memory"},
                               {"placement", place.name},
                               {"size", n},
                               {"rss_kib", rss},
                               {"rss_ready_kib", daemon.rss_kib}});
      sched_setaffinity(0, sizeof everywhere, &everywhere);
      for (auto it = Undo().rbegin(); it != Undo().rend(); ++it) (*it)();
      Undo().clear();
    }
    fs::remove_all(work);
  }
  std::vector<Goal> all;
  for (auto& [name, g] : goals) {
    for (Goal* goal : {&g.one, &g.peer, &g.list, &g.pair}) {
      if (goal->found) all.push_back(*goal);
    }
  }
  PrintGoals(all, report);
}

}  // namespace

// --- rescans (the core alone) -----------------------------------------------------

// At each size: a start that adopts N fake devices, then --rounds rescans that
// find nothing to change; their median, per device, and its growth.
void MeasureRescans(const Options& o, cyborgfs::Json& report) {
  spdlog::set_level(spdlog::level::warn);  // a line per rescan and adoption would drown the table
  std::printf("\n%-34s %7s %12s %10s %14s %10s\n", "rescans (the core, fake driver)", "N", "start ms", "commits",
              "rescan ms", "us/device");
  double first_per_device = 0, last_per_device = 0;
  for (int n : o.rescan_sizes) {
    const fs::path dir = fs::temp_directory_path() / ("cyborgfs-bench-rescan-" + std::to_string(getpid()));
    fs::create_directories(dir);
    {
      auto store = cyborgfs::Store::Open((dir / "db").string());
      if (!store.ok()) Die(store.status().message());
      std::vector<std::unique_ptr<cyborgfs::Driver>> drivers;
      drivers.push_back(cyborgfs::MakeFakeDriver("bench", n));
      cyborgfs::Service service(**store, std::move(drivers), "bench");
      const uint64_t commits_before = (*store)->Commits();
      const auto started = Clock::now();
      if (cyborgfs::Status s = service.Start(); !s.ok()) Die(s.message());
      const double start_ms = Micros(Clock::now() - started) / 1000;
      const uint64_t start_commits = (*store)->Commits() - commits_before;
      std::vector<double> ms;
      for (int r = 0; r < std::max(3, o.rounds); ++r) {
        const auto t = Clock::now();
        if (cyborgfs::Status s = service.Rescan({}); !s.ok()) Die(s.message());
        ms.push_back(Micros(Clock::now() - t) / 1000);
      }
      std::sort(ms.begin(), ms.end());
      const double median = ms[ms.size() / 2];
      const double per_device = median * 1000 / n;
      if (first_per_device == 0) first_per_device = per_device;
      last_per_device = per_device;
      std::printf("%-34s %7d %12.1f %10llu %14.2f %10.2f\n", "start, then a rescan, nothing to do", n, start_ms,
                  static_cast<unsigned long long>(start_commits), median, per_device);
      report["rescans"].push_back({{"devices", n},
                                   {"start_ms", start_ms},
                                   {"start_commits", start_commits},
                                   {"rescan_ms", median},
                                   {"us_per_device", per_device},
                                   {"commits_of_the_rescans", (*store)->Commits() - commits_before - start_commits}});
    }
    fs::remove_all(dir);
  }
  const double growth = first_per_device > 0 ? last_per_device / first_per_device : 0;
  std::printf("time per device, largest size vs smallest: x%.2f (1.00 is linear)\n", growth);
  report["rescan_growth_per_device"] = growth;
}

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  fs::create_directories(o.out);
  cyborgfs::Json report = {{"machine", Machine()}, {"rounds", o.rounds}, {"ops", o.ops}, {"sizes", o.sizes}};
  if (o.rescans_only) {
    MeasureRescans(o, report);
    return 0;
  }
  if (o.api_only) {
    MeasureApi(o, report);
    std::ofstream(o.out + "/results-api.json") << report.dump(2) << "\n";
    return 0;
  }
  std::printf("machine: %s\nmedian of %d rounds of mean per-op time; p50 and p99 over all ops\n\n", Machine().c_str(),
              o.rounds);
  std::printf("%-31s %7s %10s %10s %10s %8s %9s %9s %11s\n", "workload", "N", "mount us", "tmpfs us", "rest us",
              "x tmpfs", "p50 us", "p99 us", "mount op/s");
  std::ofstream scaling(o.out + "/scaling.dat");
  Runs runs;
  std::map<int, SizeFacts> facts;
  for (int n : o.sizes) {
    std::cerr << n << " accelerators\n";
    const std::vector<Row> rows = RunSize(o, n, facts[n]);
    const SizeFacts& f = facts[n];
    report["sizes_run"][std::to_string(n)] = {
        {"start_ms", f.start_ms}, {"rss_ready_kib", f.rss_ready_kib}, {"rss_after_kib", f.rss_after_kib}};
    std::ofstream workloads(o.out + "/workloads-" + std::to_string(n) + ".dat");
    for (const Row& row : rows) {
      runs[n][row.workload] = row;
      const Result& m = row.by_system.at("mount");
      const Result& t = row.by_system.at("tmpfs");
      const bool has_rest = row.by_system.count("rest") > 0;
      const double rest = has_rest ? row.by_system.at("rest").median_us : 0;
      char rest_text[32] = "-";
      if (has_rest) std::snprintf(rest_text, sizeof rest_text, "%.2f", rest);
      std::printf("%-31s %7d %10.2f %10.2f %10s %8.2f %9.1f %9.1f %11.0f\n", row.workload.c_str(), n, m.median_us,
                  t.median_us, rest_text, m.ratio_to_first, m.p50_us, m.p99_us, m.ops_per_s);
      cyborgfs::Json entry = {{"workload", row.workload}, {"size", n}, {"ratio_to_tmpfs", m.ratio_to_first}};
      for (const auto& [system, r] : row.by_system) {
        entry[system] = {
            {"median_us", r.median_us}, {"p50_us", r.p50_us}, {"p99_us", r.p99_us}, {"ops_per_s", r.ops_per_s}};
      }
      report["results"].push_back(entry);
      workloads << '"' << row.workload << "\" " << m.median_us << " " << t.median_us << " " << rest << "\n";
      scaling << '"' << row.workload << "\" " << n << " " << m.median_us << "\n";
    }
    std::printf("%-31s %7d %10.1f ms to ready, %ld KiB resident at ready, %ld KiB after the workloads\n\n", "daemon", n,
                f.start_ms, f.rss_ready_kib, f.rss_after_kib);
  }
  PrintGoals(Goals(runs, facts), report);
  MeasureRescans(o, report);
  MeasureApi(o, report);
  std::ofstream(o.out + "/results.json") << report.dump(2) << "\n";
  std::printf("\nresults: %s/results.json\n", o.out.c_str());
  return 0;
}
