#include "supervisor/listener.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace duet::supervisor {

namespace {
constexpr size_t kMaxLine = 256;  // longer lines are not ours: the connection is dropped
}

std::string advertised_host(const std::string& name) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET, hints.ai_socktype = SOCK_STREAM;  // as the ranks resolve it
  const int e = name.empty() ? EAI_NONAME : getaddrinfo(name.c_str(), nullptr, &hints, &res);
  if (e == 0) {
    freeaddrinfo(res);
    return name;
  }
  // Said once per listener: ranks on other machines cannot reach a loopback address, and this
  // line tells why they fail to.
  std::fprintf(stderr, "supervisor: this machine's name '%s' does not resolve here (%s): ranks are told 127.0.0.1, "
               "which only ranks on this machine can reach\n", name.c_str(), gai_strerror(e));
  return "127.0.0.1";
}

Listener::Listener(std::string host, int port) : host_(std::move(host)) {
  if (host_.empty()) {
    char buf[256] = {0};
    gethostname(buf, sizeof buf - 1);
    host_ = advertised_host(buf);
  }
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error(std::string("supervisor: socket: ") + std::strerror(errno));
  const int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons((uint16_t)port);
  if (bind(listen_fd_, (sockaddr*)&addr, sizeof addr) != 0 || listen(listen_fd_, 1024) != 0) {
    const int err = errno;
    close(listen_fd_);
    throw std::runtime_error("supervisor: cannot listen on port " + std::to_string(port) + ": " + std::strerror(err));
  }
  socklen_t len = sizeof addr;
  getsockname(listen_fd_, (sockaddr*)&addr, &len);
  port_ = ntohs(addr.sin_port);
}

Listener::~Listener() {
  drop_all();
  if (listen_fd_ >= 0) close(listen_fd_);
}

void Listener::drop_all() {
  for (auto& c : conns_) close(c.fd);
  conns_.clear();
  stopping_ = false;
}

std::vector<RankReport> Listener::poll(int timeout_ms) {
  std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}};
  for (const auto& c : conns_) fds.push_back({c.fd, POLLIN, 0});
  std::vector<RankReport> out;
  if (::poll(fds.data(), fds.size(), timeout_ms) <= 0) return out;
  std::vector<Conn> keep;
  for (size_t i = 0; i < conns_.size(); ++i) {
    Conn& c = conns_[i];
    bool open = true;
    if (fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[4096];
      const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      if (n <= 0) {
        open = false;
      } else {
        c.buffer.append(buf, (size_t)n);
        size_t nl;
        while (open && (nl = c.buffer.find('\n')) != std::string::npos) {
          const auto m = core::decode_rank_message(std::string_view(c.buffer).substr(0, nl));
          c.buffer.erase(0, nl + 1);
          if (!m) continue;  // garbled: dropped
          if (m->kind == core::RankMessage::Kind::Hello) {
            if (attempt_ > 0 && m->attempt != attempt_) {  // another attempt's: closed unheard
              c.rank = -1, open = false;
              break;
            }
            c.rank = m->rank;
          }
          out.push_back({RankReport::Kind::Message, c.rank, *m});
        }
        if (c.buffer.size() > kMaxLine) open = false;
      }
    }
    if (open) {
      keep.push_back(c);
    } else {
      close(c.fd);
      out.push_back({RankReport::Kind::Closed, c.rank, {}});
    }
  }
  conns_.swap(keep);
  if (fds[0].revents & POLLIN) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      conns_.push_back({fd, -1, {}});
      if (stopping_) (void)!send(fd, "stop\n", 5, MSG_NOSIGNAL);
    }
  }
  return out;
}

void Listener::stop() {
  stopping_ = true;
  for (const auto& c : conns_) (void)!send(c.fd, "stop\n", 5, MSG_NOSIGNAL);
}

void Listener::abort_all() {
  for (const auto& c : conns_) (void)!send(c.fd, "abort\n", 6, MSG_NOSIGNAL);
}

std::vector<int> Listener::request_stacks(const std::string& dir) {
  const std::string line = core::encode_stacks_request(dir);
  std::vector<int> asked;
  if (line.empty()) return asked;
  for (const auto& c : conns_)
    if (c.rank >= 0 && send(c.fd, line.data(), line.size(), MSG_NOSIGNAL) == (ssize_t)line.size()) asked.push_back(c.rank);
  return asked;
}

void Listener::cancel_stacks() {
  for (const auto& c : conns_) (void)!send(c.fd, "nostacks\n", 9, MSG_NOSIGNAL);
}

}  // namespace duet::supervisor
