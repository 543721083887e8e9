// The HTTP transport of the REST API: sockets, connections, workers.
//
// cpp-httplib parses requests and writes responses; this class owns what it
// would do with a thread per connection, so that no client can hold the
// server up. Limits::workers threads wait on one epoll set (each connection
// in it once, EPOLLONESHOT) and each serves what it is woken for: it accepts,
// or reads what a client sent, without blocking. A request is answered only
// once it is whole: its head (at most Limits::max_head bytes) and its body
// (Content-Length or chunked, at most Limits::max_body bytes); until then the
// connection goes back to the set. So a client that sends half a request and
// stalls holds no thread; it is dropped Limits::request_time after its first
// byte. An idle keep-alive connection costs no thread either, and is closed
// after Limits::idle_time. Each thread answers through its own
// httplib::Server (one Handler call per request), then answers the next
// request already read (pipelining) or hands the connection back. A response
// is written within Limits::write_time or the connection drops.
//
// A head over max_head is answered 431, a body over max_body 413, a
// compressed one (Content-Encoding) 415, all with Connection: close, without
// reading the rest (what more it sends is read and dropped, for 2 s at
// most, so that it sees the answer). A client that expects 100-continue is told to go on once
// the head is whole.
//
// Who is on the other end (a Peer) is known from the socket: on the unix
// socket the peer's credentials (SO_PEERCRED, read when it connects, and its
// supplementary groups from /proc); over TCP its address.
//
// Thread safety: Listen* before Start; Start and Stop from one thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cyborgfs/caller.h"
#include "cyborgfs/status.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace cyborgfs::api {

// The client of a connection.
struct Peer {
  bool tcp = false;
  Caller caller;        // unix socket: Caller::Process of the peer's credentials
  std::string address;  // TCP: "ADDR:PORT" of the client; unix socket: empty
};

// How far a request may go: what a request is framed with.
struct Framing {
  enum class State {
    kIncomplete,  // more bytes may complete it
    kComplete,    // the first `length` bytes are one whole request
    kHeadTooLarge,
    kBodyTooLarge,
    kMalformed,            // a length that cannot be read, or two: 400
    kUnsupportedEncoding,  // a compressed body (Content-Encoding): 415
  };
  State state = State::kIncomplete;
  size_t length = 0;           // kComplete: the request's bytes
  size_t head = 0;             // the head's bytes, once it is whole (0 before)
  size_t expect_continue = 0;  // where its "Expect: 100-continue" line starts (0: none)
};
// Frames the first request of `in`: pure, unit-tested.
Framing FrameRequest(std::string_view in, size_t max_head, size_t max_body);

class HttpServer {
 public:
  struct Limits {
    size_t max_head = 16 * 1024;
    size_t max_body = 64 * 1024;
    std::chrono::milliseconds request_time{10000};  // from a request's first byte to its last
    std::chrono::milliseconds idle_time{60000};     // a keep-alive connection waiting for a request
    std::chrono::milliseconds write_time{10000};    // to write one response
    size_t workers = 16;
    size_t max_connections = 16384;  // more are accepted and closed at once
  };
  using Handler = std::function<void(const Peer&, const httplib::Request&, httplib::Response&)>;
  // The body of an error response of the transport's own (431, 413, 408...):
  // the same JSON as the Handler's errors.
  using ErrorBody = std::function<std::string(int status, const std::string& message)>;

  HttpServer(Handler handler, ErrorBody error_body, Limits limits);
  HttpServer(Handler handler, ErrorBody error_body) : HttpServer(std::move(handler), std::move(error_body), Limits()) {}
  ~HttpServer();

  // Listens on unix socket `path`, made 0666 (its folder is created 0755 if
  // missing). A socket file no one listens on any more is replaced; one a
  // process still serves is kBusy, any other file at `path` kExists.
  Status ListenUnix(const std::string& path);
  // Listens on "ADDR:PORT" (an IPv4 or IPv6 address, "[::1]:8080"; port 0:
  // any free one, see TcpPort()).
  Status ListenTcp(const std::string& address);
  int TcpPort() const { return tcp_port_; }

  // Starts the poller and the workers (after a fork: threads do not survive it).
  void Start();
  // Stops accepting, closes every connection (a request being answered is
  // answered first), joins the threads, removes the unix socket file.
  void Stop();

  // Open connections now (for tests and stats).
  size_t Connections() const;

 private:
  struct Connection;
  class Worker;
  using Clock = std::chrono::steady_clock;

  void Serve(Worker& worker);  // a worker thread
  void Accept(int listener, bool tcp);
  void Arm(int fd, uint64_t id, int op);  // back into the epoll set
  void ArmListener(int fd, bool tcp);
  // Reads what connection `id` sent and answers every whole request in it.
  void Handle(Worker& worker, uint64_t id);
  void Receive(Connection& c);  // REQUIRES: c.busy, set by the caller
  // Answers an error of the transport's own and closes the connection once
  // the client has stopped sending (lingering). REQUIRES: c.busy.
  void Refuse(Connection& c, int status, const std::string& message);
  void Close(uint64_t id);  // REQUIRES: mu_ not held
  // Drops the connections idle or stalled too long, every `period` until Stop.
  void SweepEvery(std::chrono::milliseconds period);
  void Sweep(Clock::time_point now);  // REQUIRES: sweep_mu_
  // Writes an error response of the transport's own, waiting at most `wait`.
  void WriteError(const Connection& c, int status, const std::string& message, std::chrono::milliseconds wait);

  const Handler handler_;
  const ErrorBody error_body_;
  const Limits limits_;

  int unix_fd_ = -1;
  std::string unix_path_;
  int tcp_fd_ = -1;
  int tcp_port_ = 0;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // an eventfd: Stop wakes every thread with it
  std::atomic<bool> stopping_{false};

  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;  // REQUIRES: mu_
  uint64_t next_id_ = 16;                                                  // REQUIRES: mu_

  std::mutex sweep_mu_;  // the sweeper's; Stop wakes it with sweep_cv_
  std::condition_variable sweep_cv_;

  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
};

}  // namespace cyborgfs::api
