#include "http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netdb.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cyborgfs/values.h"

namespace cyborgfs::api {
namespace {

// How long a worker tries to write an error of the transport's own.
constexpr std::chrono::milliseconds kErrorWait{1000};

std::string Errno(int error) { return std::strerror(error); }

bool StartsWithNoCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && strncasecmp(text.data(), prefix.data(), prefix.size()) == 0;
}

// The supplementary groups of process `pid` (/proc/PID/status), empty if it
// is gone.
std::vector<gid_t> GroupsOf(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::vector<gid_t> groups;
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream words(line.substr(7));
    for (gid_t g; words >> g;) groups.push_back(g);
    break;
  }
  return groups;
}

std::string AddressOf(const sockaddr_storage& address) {
  char host[INET6_ADDRSTRLEN] = {};
  int port = 0;
  if (address.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(address);
    inet_ntop(AF_INET, &in.sin_addr, host, sizeof host);
    port = ntohs(in.sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
  inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host);
  port = ntohs(in6.sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 431:
      return "Request Header Fields Too Large";
    default:
      return "Error";
  }
}

// What the transport's own errors say.
std::string TransportMessage(int status) {
  switch (status) {
    case 400:
      return "the request is not HTTP/1.1 this server can read";
    case 408:
      return "the request did not arrive in time";
    case 413:
      return "the body is larger than the largest allowed";
    case 414:
      return "the request target is too long";
    case 415:
      return "a compressed body (Content-Encoding) is not accepted: send the JSON as it is";
    case 431:
      return "the request head is larger than the largest allowed";
    default:
      return "the request failed";
  }
}

// The bytes of the first request in a buffer, and where it ends; the stream
// httplib reads a request from and writes its response to. Writes are
// gathered and sent in as few send(2) calls as the socket takes, each within
// the connection's write deadline.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(int fd, std::string_view request, const Peer& peer, std::chrono::milliseconds write_time)
      : fd_(fd), in_(request), peer_(peer), deadline_(std::chrono::steady_clock::now() + write_time) {}

  bool is_readable() const override { return pos_ < in_.size(); }
  bool is_writable() const override { return !failed_; }
  ssize_t read(char* ptr, size_t size) override {
    const size_t n = std::min(size, in_.size() - pos_);
    std::memcpy(ptr, in_.data() + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (failed_) return -1;
    if (out_.size() + size <= kGather) {
      out_.append(ptr, size);
      return static_cast<ssize_t>(size);
    }
    if (!Flush() || !Send(ptr, size)) return -1;
    return static_cast<ssize_t>(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = peer_.tcp ? peer_.address : "unix";
    port = 0;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip.clear();
    port = 0;
  }
  socket_t socket() const override { return fd_; }

  bool Flush() {
    const bool sent = failed_ || out_.empty() || Send(out_.data(), out_.size());
    out_.clear();
    return sent && !failed_;
  }

 private:
  static constexpr size_t kGather = 64 * 1024;

  bool Send(const char* data, size_t size) {
    while (size > 0) {
      const ssize_t n = ::send(fd_, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        data += n;
        size -= static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now());
        pollfd p{fd_, POLLOUT, 0};
        if (left.count() > 0 && ::poll(&p, 1, static_cast<int>(left.count())) > 0) continue;
      }
      failed_ = true;  // the client went away, or reads too slowly
      return false;
    }
    return true;
  }

  const int fd_;
  const std::string_view in_;
  const Peer& peer_;
  const std::chrono::steady_clock::time_point deadline_;
  size_t pos_ = 0;
  std::string out_;
  bool failed_ = false;
};

// The size of a chunked body that starts at `in[at]`: kComplete with
// `end` past its last byte, or what is wrong with it.
Framing::State FrameChunks(std::string_view in, size_t at, size_t max_body, size_t max_raw, size_t& end) {
  size_t body = 0;
  for (;;) {
    const size_t line_end = in.find("\r\n", at);
    if (line_end == std::string_view::npos) {
      return in.size() - at > 64 || in.size() > max_raw ? Framing::State::kMalformed : Framing::State::kIncomplete;
    }
    const std::string_view size_line = in.substr(at, line_end - at);
    size_t size = 0;
    size_t digits = 0;
    for (char c : size_line) {
      const int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                    : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F')                    ? c - 'A' + 10
                                                                : -1;
      if (v < 0) break;  // a chunk extension (";name=value") may follow
      if (++digits > 8) return Framing::State::kBodyTooLarge;
      size = size * 16 + static_cast<size_t>(v);
    }
    if (digits == 0) return Framing::State::kMalformed;
    at = line_end + 2;
    if (size == 0) break;
    body += size;
    if (body > max_body) return Framing::State::kBodyTooLarge;
    if (in.size() < at + size + 2)
      return in.size() > max_raw ? Framing::State::kBodyTooLarge : Framing::State::kIncomplete;
    if (in.substr(at + size, 2) != "\r\n") return Framing::State::kMalformed;
    at += size + 2;
  }
  // Trailer lines, then an empty line.
  for (;;) {
    const size_t line_end = in.find("\r\n", at);
    if (line_end == std::string_view::npos) {
      return in.size() > max_raw ? Framing::State::kBodyTooLarge : Framing::State::kIncomplete;
    }
    const bool blank = line_end == at;
    at = line_end + 2;
    if (blank) break;
  }
  end = at;
  return Framing::State::kComplete;
}

}  // namespace

Framing FrameRequest(std::string_view in, size_t max_head, size_t max_body) {
  Framing f;
  const size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    f.length = in.size();
    if (in.size() > max_head) f.state = Framing::State::kHeadTooLarge;
    return f;
  }
  const size_t body_start = head_end + 4;
  f.length = body_start;
  f.head = body_start;
  if (body_start > max_head) {
    f.state = Framing::State::kHeadTooLarge;
    return f;
  }
  // The header lines that decide the body's length.
  std::optional<uint64_t> content_length;
  bool chunked = false;
  size_t at = in.find("\r\n") + 2;  // past the request line
  while (at < head_end + 2) {
    const size_t line_end = in.find("\r\n", at);
    const std::string_view line = in.substr(at, line_end - at);
    at = line_end + 2;
    if (StartsWithNoCase(line, "content-length:")) {
      const std::string_view value = TrimSpaces(line.substr(15));
      uint64_t n = 0;
      if (value.empty() || value.size() > 18) {
        f.state = value.empty() ? Framing::State::kMalformed : Framing::State::kBodyTooLarge;
        return f;
      }
      for (char c : value) {
        if (!std::isdigit(static_cast<unsigned char>(c))) {
          f.state = Framing::State::kMalformed;
          return f;
        }
        n = n * 10 + static_cast<uint64_t>(c - '0');
      }
      if (content_length && *content_length != n) {
        f.state = Framing::State::kMalformed;  // two lengths: request smuggling
        return f;
      }
      content_length = n;
    } else if (StartsWithNoCase(line, "transfer-encoding:")) {
      const std::string_view value = TrimSpaces(line.substr(18));
      if (value.size() != 7 || strncasecmp(value.data(), "chunked", 7) != 0) {
        f.state = Framing::State::kMalformed;  // only chunked is understood (httplib's rule)
        return f;
      }
      chunked = true;
    } else if (StartsWithNoCase(line, "content-encoding:")) {
      const std::string_view value = TrimSpaces(line.substr(17));
      if (value.size() != 8 || strncasecmp(value.data(), "identity", 8) != 0) {
        f.state = Framing::State::kUnsupportedEncoding;
        return f;
      }
    } else if (StartsWithNoCase(line, "expect:")) {
      const std::string_view value = TrimSpaces(line.substr(7));
      if (value.size() == 12 && strncasecmp(value.data(), "100-continue", 12) == 0) {
        f.expect_continue = static_cast<size_t>(line.data() - in.data());
      }
    }
  }
  if (chunked && content_length) {
    f.state = Framing::State::kMalformed;
    return f;
  }
  if (chunked) {
    size_t end = 0;
    f.state = FrameChunks(in, body_start, max_body, max_head + 8 * max_body, end);
    if (f.state == Framing::State::kComplete) f.length = end;
    return f;
  }
  const uint64_t length = content_length.value_or(0);
  if (length > max_body) {
    f.state = Framing::State::kBodyTooLarge;
    return f;
  }
  if (in.size() - body_start < length) return f;  // kIncomplete
  f.state = Framing::State::kComplete;
  f.length = body_start + static_cast<size_t>(length);
  return f;
}

// --- connections and workers ------------------------------------------------

struct HttpServer::Connection {
  uint64_t id = 0;  // what its epoll events carry: never reused, unlike its fd
  int fd = -1;
  Peer peer;
  std::string in;            // what the client sent and no worker answered yet
  Clock::time_point since;   // of the first byte of `in`, or of the last answer while `in` is empty
  bool busy = false;         // a worker serves it; else it waits in the epoll set (REQUIRES: the server's mu_)
  bool peer_closed = false;  // the client sends no more
  // An error was answered and the connection is closing: what the client
  // still sends (the rest of a body too large) is read and dropped until it
  // stops or kLinger passes, so that it reads the answer rather than a reset.
  bool lingering = false;
};

// A worker thread's httplib::Server: routes every request to the Handler
// with the Peer of the connection it is answering.
class HttpServer::Worker : public httplib::Server {
 public:
  explicit Worker(HttpServer& server) : server_(server) {
    const auto route = [this](const httplib::Request& req, httplib::Response& res) {
      server_.handler_(*peer_, req, res);
    };
    // A request without a body is routed before httplib reads one: its
    // router matches a std::regex per request, a third of its cost. The
    // others are routed once their body is read.
    set_pre_routing_handler([route](const httplib::Request& req, httplib::Response& res) {
      if (req.method != "GET" && req.method != "HEAD" && req.method != "DELETE" && req.method != "OPTIONS") {
        return HandlerResponse::Unhandled;
      }
      route(req, res);
      return HandlerResponse::Handled;
    });
    Post(".*", route);
    Put(".*", route);
    Patch(".*", route);
    set_payload_max_length(server.limits_.max_body);
    set_keep_alive_timeout(std::chrono::duration_cast<std::chrono::seconds>(server.limits_.idle_time).count());
    set_keep_alive_max_count(1000000);
    set_error_handler(HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return HandlerResponse::Unhandled;  // the Handler worded it
      // httplib's own refusal (a request line or head it cannot read): what
      // follows on the connection cannot be trusted to be a request.
      close_after_ = true;
      if (res.status == 400 && (req.method == "TRACE" || req.method == "CONNECT")) res.status = 405;
      const std::string message =
          res.status == 405 ? "the method " + req.method + " is not served here" : TransportMessage(res.status);
      res.set_content(server_.error_body_(res.status, message), "application/json");
      return HandlerResponse::Handled;
    }));
    set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      spdlog::error("api: internal error, request failed with 500: {}", what);
      res.status = 500;
      res.set_content(server_.error_body_(500, "internal error: " + what), "application/json");
    });
  }

  // Answers the one request in `stream`; false if the connection must close.
  bool Serve(ConnectionStream& stream, const Peer& peer, bool last) {
    peer_ = &peer;
    close_after_ = false;
    bool closed = false;
    const bool ok = process_request(stream, last, closed, nullptr);
    peer_ = nullptr;
    return stream.Flush() && ok && !closed && !last && !close_after_;
  }

 private:
  HttpServer& server_;
  const Peer* peer_ = nullptr;
  bool close_after_ = false;
};

HttpServer::HttpServer(Handler handler, ErrorBody error_body, Limits limits)
    : handler_(std::move(handler)), error_body_(std::move(error_body)), limits_(limits) {}

HttpServer::~HttpServer() {
  Stop();
  for (int fd : {unix_fd_, tcp_fd_, epoll_fd_, wake_fd_}) {
    if (fd >= 0) ::close(fd);
  }
}

// --- listening ----------------------------------------------------------------

Status HttpServer::ListenUnix(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof address.sun_path) {
    return Status::Invalid("--api-socket: the path must be 1 to " + std::to_string(sizeof address.sun_path - 1) +
                           " bytes long: " + path);
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  std::error_code ec;
  const std::filesystem::path folder = std::filesystem::absolute(path).parent_path();
  if (!std::filesystem::exists(folder, ec)) {
    std::filesystem::create_directories(folder, ec);
    if (ec)
      return Status::IoError("cannot create the folder of the API socket " + folder.string() + ": " + ec.message());
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IoError("cannot make the API socket: " + Errno(errno));
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      ::close(fd);
      return Status::Exists("cannot serve the API on " + path + ": a file that is not a socket is there");
    }
    // A socket file: someone serves it, or it is left from a daemon that died.
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool served = ::connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
    const int error = errno;
    ::close(probe);
    if (served || error != ECONNREFUSED) {
      ::close(fd);
      return Status::Busy("cannot serve the API on " + path +
                          ": another process serves it (give another --api-socket)");
    }
    ::unlink(path.c_str());
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      ::chmod(path.c_str(), 0666) != 0 || ::listen(fd, SOMAXCONN) != 0) {
    const int error = errno;
    ::close(fd);
    return Status::IoError("cannot serve the API on " + path + ": " + Errno(error));
  }
  unix_fd_ = fd;
  unix_path_ = path;
  return Status::Ok();
}

Status HttpServer::ListenTcp(const std::string& address) {
  std::string host;
  std::string port;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    return Status::Invalid("--api-listen: expected ADDR:PORT (127.0.0.1:8080, [::1]:8080), got \"" + address + "\"");
  }
  host = address.substr(0, colon);
  port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int e = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found); e != 0) {
    return Status::Invalid("--api-listen " + address + ": " + gai_strerror(e));
  }
  const int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int yes = 1;
  const bool ok = fd >= 0 && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes) == 0 &&
                  ::bind(fd, found->ai_addr, found->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0;
  const int error = errno;
  ::freeaddrinfo(found);
  if (!ok) {
    if (fd >= 0) ::close(fd);
    return Status::IoError("cannot serve the API on " + address + ": " + Errno(error));
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
  tcp_port_ = bound.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in&>(bound).sin_port)
                                         : ntohs(reinterpret_cast<sockaddr_in6&>(bound).sin6_port);
  tcp_fd_ = fd;
  return Status::Ok();
}

// --- serving ----------------------------------------------------------------

namespace {

// What an epoll event is about: these, or a connection's id.
constexpr uint64_t kWakeEvent = 0;
constexpr uint64_t kUnixListenerEvent = 1;
constexpr uint64_t kTcpListenerEvent = 2;
constexpr uint64_t kFirstConnection = 16;
constexpr int kSweepMs = 250;
constexpr auto kLinger = std::chrono::seconds(2);

}  // namespace

void HttpServer::Start() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  // A listener wakes one worker (EPOLLONESHOT), which accepts what is there
  // and arms it again; the eventfd wakes them all.
  for (auto [fd, what] :
       {std::pair{unix_fd_, kUnixListenerEvent}, {tcp_fd_, kTcpListenerEvent}, {wake_fd_, kWakeEvent}}) {
    if (fd < 0) continue;
    epoll_event e{};
    e.events = what == kWakeEvent ? EPOLLIN : EPOLLIN | EPOLLONESHOT;
    e.data.u64 = what;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &e);
  }
  stopping_ = false;
  for (size_t i = 0; i < limits_.workers; ++i) workers_.push_back(std::make_unique<Worker>(*this));
  for (auto& worker : workers_) threads_.emplace_back([this, w = worker.get()] { Serve(*w); });
  threads_.emplace_back([this] { SweepEvery(std::chrono::milliseconds(kSweepMs)); });
}

void HttpServer::Stop() {
  if (threads_.empty()) return;
  {
    std::lock_guard lock(sweep_mu_);
    stopping_ = true;
  }
  sweep_cv_.notify_all();
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);  // stays readable: every thread wakes
  for (auto& t : threads_) t.join();
  threads_.clear();
  workers_.clear();
  std::lock_guard lock(mu_);
  for (auto& [id, connection] : connections_) ::close(connection->fd);
  connections_.clear();
  if (unix_fd_ >= 0) {
    ::close(unix_fd_);
    unix_fd_ = -1;
    ::unlink(unix_path_.c_str());
  }
  if (tcp_fd_ >= 0) {
    ::close(tcp_fd_);
    tcp_fd_ = -1;
  }
}

size_t HttpServer::Connections() const {
  std::lock_guard lock(mu_);
  return connections_.size();
}

// Every worker waits on the one epoll set and serves what it is woken for:
// no thread hands a request to another. The wait has no timeout (arming a
// timer at every wait is a cost of its own); the sweeper has the clock.
void HttpServer::Serve(Worker& worker) {
  for (;;) {
    epoll_event e{};
    const int n = ::epoll_wait(epoll_fd_, &e, 1, -1);
    if (stopping_) return;
    if (n != 1) continue;
    if (e.data.u64 == kUnixListenerEvent) {
      Accept(unix_fd_, false);
    } else if (e.data.u64 == kTcpListenerEvent) {
      Accept(tcp_fd_, true);
    } else if (e.data.u64 >= kFirstConnection) {
      Handle(worker, e.data.u64);
    }
  }
}

void HttpServer::SweepEvery(std::chrono::milliseconds period) {
  std::unique_lock lock(sweep_mu_);
  while (!sweep_cv_.wait_for(lock, period, [this] { return stopping_.load(); })) Sweep(Clock::now());
}

void HttpServer::Accept(int listener, bool tcp) {
  for (;;) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    const int fd = ::accept4(listener, reinterpret_cast<sockaddr*>(&address), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        // Out of descriptors: accepting starts again at the next sweep.
        spdlog::warn("api: cannot accept a connection: {}", Errno(errno));
        return;
      }
      return ArmListener(listener, tcp);  // EAGAIN: all accepted
    }
    auto c = std::make_unique<Connection>();
    c->fd = fd;
    c->since = Clock::now();
    c->peer.tcp = tcp;
    if (tcp) {
      c->peer.address = AddressOf(address);
      c->peer.caller = Caller{Caller::Kind::kToken};
      c->peer.caller.address = c->peer.address;
      const int yes = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    } else {
      ucred cred{};
      socklen_t cred_length = sizeof cred;
      if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_length) != 0) {
        ::close(fd);
        continue;
      }
      c->peer.caller = Caller::Process(cred.uid, cred.gid, cred.pid, GroupsOf(cred.pid));
    }
    uint64_t id;
    {
      std::lock_guard lock(mu_);
      if (connections_.size() >= limits_.max_connections) {
        spdlog::warn("api: {} connections are open, the most allowed: one more is closed", connections_.size());
        ::close(fd);
        continue;
      }
      id = next_id_++;
      c->id = id;
      connections_.emplace(id, std::move(c));
    }
    Arm(fd, id, EPOLL_CTL_ADD);
  }
}

void HttpServer::Arm(int fd, uint64_t id, int op) {
  epoll_event e{};
  e.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
  e.data.u64 = id;
  ::epoll_ctl(epoll_fd_, op, fd, &e);
}

void HttpServer::Handle(Worker& worker, uint64_t id) {
  Connection* c = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = connections_.find(id);
    if (it == connections_.end() || it->second->busy) return;  // swept meanwhile
    c = it->second.get();
    c->busy = true;
  }
  Receive(*c);
  if (c->lingering) {
    c->in.clear();
    if (c->peer_closed) return Close(id);
    {
      std::lock_guard lock(mu_);
      c->busy = false;
    }
    return Arm(c->fd, id, EPOLL_CTL_MOD);
  }
  for (;;) {
    const Framing f = FrameRequest(c->in, limits_.max_head, limits_.max_body);
    switch (f.state) {
      case Framing::State::kIncomplete:
        if (c->peer_closed) return Close(id);
        if (f.expect_continue != 0 && c->in.size() == f.head) {
          // The client waits to be told to send its body: told here (httplib
          // would tell it only once the body is here), the line is dropped.
          const size_t line_end = c->in.find("\r\n", f.expect_continue);
          c->in.erase(f.expect_continue, line_end + 2 - f.expect_continue);
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          (void)!::send(c->fd, kContinue.data(), kContinue.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        {
          std::lock_guard lock(mu_);
          c->busy = false;
        }
        return Arm(c->fd, id, EPOLL_CTL_MOD);
      case Framing::State::kHeadTooLarge:
        return Refuse(*c, 431, TransportMessage(431));
      case Framing::State::kBodyTooLarge:
        return Refuse(*c, 413, "the body is larger than " + std::to_string(limits_.max_body) + " bytes");
      case Framing::State::kMalformed:
        return Refuse(*c, 400, "the request's Content-Length or Transfer-Encoding cannot be read");
      case Framing::State::kUnsupportedEncoding:
        return Refuse(*c, 415, TransportMessage(415));
      case Framing::State::kComplete:
        break;
    }
    ConnectionStream stream(c->fd, std::string_view(c->in).substr(0, f.length), c->peer, limits_.write_time);
    const bool last = stopping_ || (c->peer_closed && c->in.size() == f.length);
    const bool keep = worker.Serve(stream, c->peer, last);
    c->in.erase(0, f.length);
    if (!keep) return Close(id);
    if (c->in.empty()) c->since = Clock::now();
  }
}

void HttpServer::Refuse(Connection& c, int status, const std::string& message) {
  WriteError(c, status, message, kErrorWait);
  ::shutdown(c.fd, SHUT_WR);  // the answer is all the client gets; what it still sends is dropped
  c.in.clear();
  c.lingering = true;
  c.since = Clock::now();
  {
    std::lock_guard lock(mu_);
    c.busy = false;
  }
  Arm(c.fd, c.id, EPOLL_CTL_MOD);
}

void HttpServer::Receive(Connection& c) {
  const size_t most = limits_.max_head + 8 * limits_.max_body + 4096;
  char buffer[16384];
  const bool was_empty = c.in.empty();
  while (c.in.size() < most) {
    const ssize_t n = ::recv(c.fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n > 0) {
      c.in.append(buffer, static_cast<size_t>(n));
      // Less than asked for: the socket is empty now (one recv(2) less per
      // request); what comes later wakes the epoll set again.
      if (static_cast<size_t>(n) < sizeof buffer) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) c.peer_closed = true;
    break;
  }
  if (was_empty && !c.in.empty()) c.since = Clock::now();
}

void HttpServer::Close(uint64_t id) {
  int fd = -1;
  {
    std::lock_guard lock(mu_);
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    fd = it->second->fd;
    connections_.erase(it);
  }
  ::close(fd);
}

void HttpServer::Sweep(Clock::time_point now) {
  {
    std::lock_guard lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      Connection& c = *it->second;
      const auto waited = now - c.since;
      const auto allowed = c.lingering    ? std::chrono::duration_cast<std::chrono::milliseconds>(kLinger)
                           : c.in.empty() ? limits_.idle_time
                                          : limits_.request_time;
      if (c.busy || waited <= allowed) {
        ++it;
        continue;
      }
      if (!c.in.empty() && !c.lingering) {
        spdlog::info("api: dropped a connection whose request did not arrive whole in {} s",
                     std::chrono::duration_cast<std::chrono::seconds>(limits_.request_time).count());
        WriteError(c, 408, TransportMessage(408), std::chrono::milliseconds(0));
      }
      ::close(c.fd);
      it = connections_.erase(it);
    }
  }
  // Accepting again, if it stopped for want of descriptors (harmless otherwise).
  if (unix_fd_ >= 0) ArmListener(unix_fd_, false);
  if (tcp_fd_ >= 0) ArmListener(tcp_fd_, true);
}

void HttpServer::ArmListener(int fd, bool tcp) {
  epoll_event e{};
  e.events = EPOLLIN | EPOLLONESHOT;
  e.data.u64 = tcp ? kTcpListenerEvent : kUnixListenerEvent;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &e);
}

void HttpServer::WriteError(const Connection& c, int status, const std::string& message,
                            std::chrono::milliseconds wait) {
  const std::string body = error_body_(status, message);
  std::string response = "HTTP/1.1 " + std::to_string(status) + " " + ReasonPhrase(status) +
                         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                         "\r\nConnection: close\r\n\r\n" + body;
  ConnectionStream stream(c.fd, {}, c.peer, wait);
  (void)stream.write(response.data(), response.size());
  (void)stream.Flush();
}

}  // namespace cyborgfs::api
