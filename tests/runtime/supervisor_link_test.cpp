// A rank's link to its supervisor, against a bare TCP server on loopback standing in for the
// supervisor: it says hello, beats with its progress, hears "stop", and treats a closed
// connection as the supervisor gone.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "runtime/supervisor_link.h"
#include "runtime/term_stop.h"

using duet::runtime::SupervisorLink;
using duet::runtime::TermStop;
using Clock = std::chrono::steady_clock;

namespace {

struct Server {
  int listen_fd = -1, fd = -1, port = 0;
  std::string received;
  Server() {
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    EXPECT_EQ(bind(listen_fd, (sockaddr*)&a, sizeof a), 0);
    listen(listen_fd, 4);
    socklen_t len = sizeof a;
    getsockname(listen_fd, (sockaddr*)&a, &len);
    port = ntohs(a.sin_port);
  }
  ~Server() {
    if (fd >= 0) close(fd);
    close(listen_fd);
  }
  void accept_one() { fd = accept(listen_fd, nullptr, nullptr); }
  // Reads until `text` has arrived (at most 5 s).
  bool read_until(const std::string& text) {
    const auto until = Clock::now() + std::chrono::seconds(5);
    char buf[512];
    while (received.find(text) == std::string::npos && Clock::now() < until) {
      const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) received.append(buf, (size_t)n);
      else std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return received.find(text) != std::string::npos;
  }
};

template <class F>
bool eventually(F&& f) {
  const auto until = Clock::now() + std::chrono::seconds(5);
  while (!f() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return f();
}

}  // namespace

TEST(SupervisorLink, HelloBeatsStopAndGone) {
  Server s;
  SupervisorLink link("127.0.0.1:" + std::to_string(s.port), 2, 3);
  s.accept_one();
  ASSERT_TRUE(s.read_until("\n"));
  EXPECT_EQ(s.received.rfind("hello 2 " + std::to_string(getpid()) + " 3 ", 0), 0u) << s.received;
  link.progress(12, 4, SupervisorLink::Phase::Save);
  EXPECT_TRUE(s.read_until("beat 12 4 save\n")) << s.received;
  link.committed(12);
  EXPECT_TRUE(s.read_until("committed 12\n"));
  EXPECT_FALSE(link.stop_requested());
  ASSERT_EQ(send(s.fd, "stop\n", 5, 0), 5);
  EXPECT_TRUE(eventually([&] { return link.stop_requested(); }));
  EXPECT_FALSE(link.supervisor_gone());
  close(s.fd), s.fd = -1;
  EXPECT_TRUE(eventually([&] { return link.supervisor_gone(); }));
}

TEST(SupervisorLink, NoneNamedIsNoLinkAndAnUnreachableOneIsAnError) {
  unsetenv(duet::core::kSupervisorEnv);
  EXPECT_EQ(SupervisorLink::from_environment(0), nullptr);
  Server s;  // bound but never accepting would still connect; use a closed port instead
  const int port = s.port;
  close(s.listen_fd), s.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_THROW(SupervisorLink("127.0.0.1:" + std::to_string(port), 0, 1), std::runtime_error);
  EXPECT_THROW(SupervisorLink("no-colon", 0, 1), std::runtime_error);
}

// A rank that takes SIGTERM as a request (runtime/term_stop.h) tells its supervisor once, and
// "abort" (a teardown) ends it by SIGTERM at once, whatever it is doing. In a child process:
// the abort ends it.
TEST(SupervisorLink, ASigtermIsToldOnceAndAbortEndsTheRankBySigterm) {
  Server s;
  const pid_t child = fork();
  if (child == 0) {
    const TermStop term;
    SupervisorLink link("127.0.0.1:" + std::to_string(s.port), 0, 1);
    link.progress(7, 0, SupervisorLink::Phase::Step);
    kill(getpid(), SIGTERM);  // a request now: the process goes on
    for (int i = 0; i < 1000; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    _exit(3);  // "abort" never came
  }
  s.accept_one();
  ASSERT_TRUE(s.read_until("mark sigterm")) << s.received;
  ASSERT_EQ(send(s.fd, "abort\n", 6, 0), 6);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
  const size_t first = s.received.find("mark sigterm");
  EXPECT_EQ(s.received.find("mark sigterm", first + 1), std::string::npos) << s.received;
}
