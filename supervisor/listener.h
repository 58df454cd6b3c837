#pragma once
// The supervisor's end of core/supervision.h: a TCP listener the ranks connect to. poll()
// returns what arrived — messages, and connections that closed (a rank died or exited) —
// without blocking longer than asked; stop() asks every connected rank to stop at its next
// step boundary.

#include <string>
#include <vector>

#include "core/supervision.h"

namespace duet::supervisor {

struct RankReport {
  enum class Kind { Message, Closed };
  Kind kind = Kind::Message;
  int rank = -1;  // from the connection's hello; -1 before it
  core::RankMessage message;
};

// The name ranks are given to reach a supervisor on a machine called `name`: the name itself,
// or the loopback address where it does not resolve (a container without its own name in
// /etc/hosts — then only ranks on this machine can reach it, as they only could anyway).
std::string advertised_host(const std::string& name);

class Listener {
 public:
  // Listens on all interfaces (port 0: the kernel picks one). `host` is the name the ranks
  // are given to reach it (by default advertised_host of this machine's host name).
  explicit Listener(std::string host = "", int port = 0);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // "host:port", for the ranks' environment (core::kSupervisorEnv).
  std::string address() const { return host_ + ":" + std::to_string(port_); }
  int port() const { return port_; }

  // Waits up to timeout_ms for activity and returns what arrived (possibly nothing).
  std::vector<RankReport> poll(int timeout_ms);
  // Sends "stop" to every connected rank, and to every rank that connects later.
  void stop();
  // Sends "abort" to every connected rank: the attempt is being torn down, so a rank that
  // would stop gracefully on SIGTERM (runtime/term_stop.h) ends at once instead.
  void abort_all();
  // Sends "stacks <dir>" to every connected rank; returns the ranks asked (those that said
  // hello). Each answers "stacksdone" once its file is written.
  std::vector<int> request_stacks(const std::string& dir);
  // "nostacks" to every connected rank: a rank that reads the request only now (it was
  // stopped) ignores it.
  void cancel_stacks();
  // Closes every rank connection and forgets a stop (a new attempt starts afresh).
  void drop_all();
  // The attempt whose ranks may speak (0: any). A connection whose hello names another one (a
  // rank of a torn-down attempt that connected late) is closed unheard: its beats must not
  // stand for a rank of this attempt, nor its close be taken for that rank's death.
  void set_attempt(int attempt) { attempt_ = attempt; }
  int connected() const { return (int)conns_.size(); }

 private:
  struct Conn {
    int fd = -1;
    int rank = -1;
    std::string buffer;
  };
  int listen_fd_ = -1;
  int attempt_ = 0;
  std::string host_;
  int port_ = 0;
  std::vector<Conn> conns_;
  bool stopping_ = false;
};

}  // namespace duet::supervisor
