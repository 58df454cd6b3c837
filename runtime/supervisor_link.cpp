#include "runtime/supervisor_link.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "runtime/stack_dump.h"
#include "runtime/term_stop.h"

namespace duet::runtime {

namespace {

int connect_to(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error(std::string(core::kSupervisorEnv) + "='" + address + "' is not host:port");
  const std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET, hints.ai_socktype = SOCK_STREAM;
  if (const int e = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); e != 0)
    throw std::runtime_error("cannot resolve the supervisor " + address + ": " + gai_strerror(e));
  int fd = -1;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) close(fd), fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) throw std::runtime_error("cannot reach the supervisor at " + address + ": " + std::strerror(errno));
  return fd;
}

}  // namespace

std::unique_ptr<SupervisorLink> SupervisorLink::from_environment(int rank) {
  const char* address = std::getenv(core::kSupervisorEnv);
  if (!address || !*address) return nullptr;
  const char* attempt = std::getenv(core::kAttemptEnv);
  auto link = std::make_unique<SupervisorLink>(address, rank, attempt ? std::max(1, std::atoi(attempt)) : 1);
  if (const char* skip = std::getenv(core::kSkipStepsEnv)) link->skipped_ = core::parse_step_list(skip);
  return link;
}

SupervisorLink::SupervisorLink(const std::string& address, int rank, int attempt)
    : fd_(connect_to(address)), rank_(rank), attempt_(attempt) {
  install_stack_dump_handler();
  core::RankMessage hello;
  hello.kind = core::RankMessage::Kind::Hello, hello.rank = rank, hello.pid = (int)getpid(), hello.attempt = attempt;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  hello.host = host;
  hello.node = core::logical_node_of(rank);
  send(hello);
  // How long this process took to get here, for the supervisor's recovery breakdown.
  mark("age", core::process_age_seconds());
  mark("mpi_init", core::mpi_init_seconds());
  thread_ = std::thread([this] { loop(); });
}

SupervisorLink::~SupervisorLink() {
  quit_ = true;
  if (thread_.joinable()) thread_.join();
  close(fd_);
}

void SupervisorLink::send(const core::RankMessage& m) {
  const std::string line = core::encode(m);
  std::lock_guard lock(send_mu_);
  // A send cut short (a signal while the socket's buffer was full) goes on with the rest.
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = ::send(fd_, line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      gone_ = true;
      return;
    }
    done += (size_t)n;
  }
}

void SupervisorLink::step_time(int step, double seconds) {
  core::RankMessage m;
  m.kind = core::RankMessage::Kind::StepTime, m.step = step, m.seconds = seconds;
  send(m);
}

void SupervisorLink::committed(int step) {
  core::RankMessage m;
  m.kind = core::RankMessage::Kind::Committed, m.step = step;
  send(m);
}

void SupervisorLink::non_finite(int step, int at_rank, int dir, int mb) {
  core::RankMessage m;
  m.kind = core::RankMessage::Kind::NonFinite, m.step = step, m.at_rank = at_rank, m.dir = dir, m.mb = mb;
  send(m);
}

void SupervisorLink::mark(const std::string& name, double seconds, int step) {
  core::RankMessage m;
  m.kind = core::RankMessage::Kind::Mark, m.name = name, m.seconds = seconds, m.step = step;
  send(m);
}

void SupervisorLink::inject(int signal, int step) {
  core::RankMessage m;
  m.kind = core::RankMessage::Kind::Inject, m.signal = signal, m.step = step;
  send(m);
}

void SupervisorLink::handle(const std::string& line) {
  if (line == "stop") {
    stop_ = true;
  } else if (line == "abort") {  // the attempt is torn down: end now, as SIGTERM did before
    die_by_sigterm();
  } else if (const auto dir = core::decode_stacks_request(line)) {
    write_all_stacks(*dir + "/rank-" + std::to_string(rank_) + ".stacks.txt",
                     "rank " + std::to_string(rank_) + ", pid " + std::to_string(getpid()) + ": every thread's stack");
    core::RankMessage m;
    m.kind = core::RankMessage::Kind::StacksDone;
    send(m);
  }
}

void SupervisorLink::tell_term() {
  if (TermStop::requested() && !told_term_.exchange(true)) mark("sigterm", 0, step_.load(std::memory_order_relaxed));
}

void SupervisorLink::done() {
  tell_term();  // a stop that took less than one heartbeat: the supervisor still hears why
  core::RankMessage m;
  m.kind = core::RankMessage::Kind::Done;
  send(m);
}

void SupervisorLink::loop() {
  std::string inbox;
  while (!quit_) {
    tell_term();
    core::RankMessage beat;
    beat.kind = core::RankMessage::Kind::Beat;
    beat.step = step_.load(std::memory_order_relaxed), beat.op = op_.load(std::memory_order_relaxed);
    beat.phase = (Phase)phase_.load(std::memory_order_relaxed);
    send(beat);
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) {
      char buf[256];
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        gone_ = true;
        return;
      }
      inbox.append(buf, (size_t)n);
      std::vector<std::string> lines;
      for (size_t nl; (nl = inbox.find('\n')) != std::string::npos;) {
        lines.push_back(inbox.substr(0, nl));
        inbox.erase(0, nl + 1);
      }
      // A stacks request the supervisor already gave up on (this process was stopped, and
      // continued only to be torn down) is followed by "nostacks": its stacks would show the
      // state after the hang, not during it.
      for (size_t i = 0; i < lines.size(); ++i) {
        const bool cancelled = lines[i].starts_with("stacks ") &&
                               std::find(lines.begin() + i, lines.end(), "nostacks") != lines.end();
        if (!cancelled) handle(lines[i]);
      }
      if (inbox.size() > 4096) inbox.clear();  // not a line of ours
    }
  }
}

}  // namespace duet::runtime
