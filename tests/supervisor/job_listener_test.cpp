// The supervisor's process and socket side: a job is a process group that is watched without
// blocking and killed whole; the listener hears ranks over TCP (loopback here) and notices a
// closed connection at once.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "supervisor/job.h"
#include "supervisor/listener.h"

using namespace duet::supervisor;
using Clock = std::chrono::steady_clock;

namespace {

// Polls until the job's leader has ended (at most 10 s).
ExitStatus wait_for(Job& j) {
  const auto until = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < until) {
    if (auto s = j.poll()) return *s;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ADD_FAILURE() << "job did not end";
  return {};
}

int connect_loopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET, a.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  EXPECT_EQ(connect(fd, (sockaddr*)&a, sizeof a), 0);
  return fd;
}

// Polls the listener until `want` reports arrived (at most 5 s).
std::vector<RankReport> collect(Listener& l, size_t want) {
  std::vector<RankReport> got;
  const auto until = Clock::now() + std::chrono::seconds(5);
  while (got.size() < want && Clock::now() < until)
    for (auto& r : l.poll(50)) got.push_back(r);
  return got;
}

}  // namespace

TEST(SupervisorJob, ReportsExitCodesAndSignals) {
  Job a({"sh", "-c", "exit 3"});
  EXPECT_EQ(wait_for(a).code, 3);
  Job b({"sh", "-c", "kill -9 $$"});
  const ExitStatus s = wait_for(b);
  EXPECT_EQ(s.signal, 9);
  EXPECT_FALSE(s.ok());
  Job c({"sh", "-c", "test \"$DUET_ATTEMPT\" = 7"}, {{"DUET_ATTEMPT", "7"}});
  EXPECT_TRUE(wait_for(c).ok());
}

TEST(SupervisorJob, AProgramThatCannotStartIsNamed) {
  try {
    Job j({"duet-no-such-program"});
    FAIL() << "started";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("duet-no-such-program"), std::string::npos) << e.what();
  }
}

TEST(SupervisorJob, KillAllLeavesNoProcessOfTheGroup) {
  // A leader with children, one ignoring SIGTERM and one stopped (it cannot act on SIGTERM);
  // the leader says when they are all there.
  const std::string ready = testing::TempDir() + "duet-job-ready-" + std::to_string(getpid());
  unlink(ready.c_str());
  Job j({"sh", "-c", "sleep 100 & (trap '' TERM; sleep 100) & sleep 100 & kill -STOP $!; echo > " + ready + "; wait"});
  const auto until = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < until && access(ready.c_str(), F_OK) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(access(ready.c_str(), F_OK), 0);
  unlink(ready.c_str());
  const auto t0 = Clock::now();
  const ExitStatus s = j.kill_all(0.5);
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(j.group_alive());  // nothing of the group runs (zombies wait for init to reap them)
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
}

// Ranks are told a name they can resolve: where the host's own name does not (a bare container
// without it in /etc/hosts), the loopback address.
TEST(SupervisorListener, AdvertisesANameThatResolvesOrTheLoopback) {
  EXPECT_EQ(duet::supervisor::advertised_host("127.0.0.1"), "127.0.0.1");  // resolves without /etc/hosts
  EXPECT_EQ(duet::supervisor::advertised_host("no-such-host.invalid"), "127.0.0.1");  // RFC 2606: never resolves
  EXPECT_EQ(duet::supervisor::advertised_host(""), "127.0.0.1");
}

TEST(SupervisorListener, HearsRanksAndNoticesAClosedConnection) {
  Listener l("127.0.0.1");
  EXPECT_EQ(l.address(), "127.0.0.1:" + std::to_string(l.port()));
  const int fd = connect_loopback(l.port());
  const std::string lines = "hello 5 1234 1 node-a\nbeat 3 7 step\nnot a message\nsteptime 3 0.25\n";
  ASSERT_EQ(send(fd, lines.data(), lines.size(), 0), (ssize_t)lines.size());
  auto got = collect(l, 3);
  ASSERT_EQ(got.size(), 3u);  // the garbled line is dropped
  EXPECT_EQ(got[0].message.kind, duet::core::RankMessage::Kind::Hello);
  for (const auto& r : got) EXPECT_EQ(r.rank, 5);
  EXPECT_EQ(got[1].message.step, 3);
  EXPECT_EQ(got[1].message.op, 7);
  EXPECT_DOUBLE_EQ(got[2].message.seconds, 0.25);
  // stop reaches the rank.
  l.stop();
  char buf[16] = {0};
  ASSERT_EQ(recv(fd, buf, 5, MSG_WAITALL), 5);
  EXPECT_EQ(std::string(buf), "stop\n");
  // A rank's death closes its connection: reported with its rank.
  const auto t0 = Clock::now();
  close(fd);
  got = collect(l, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kind, RankReport::Kind::Closed);
  EXPECT_EQ(got[0].rank, 5);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(1));
  EXPECT_EQ(l.connected(), 0);
}

// A rank of an earlier attempt that connects late (a straggler of a torn-down job) is closed
// unheard: neither its beats nor its close are reported as a rank of this attempt.
TEST(SupervisorListener, AnotherAttemptsRankIsClosedUnheard) {
  Listener l("127.0.0.1");
  l.set_attempt(2);
  const int stale = connect_loopback(l.port());
  const std::string lines = "hello 5 1234 1 node-a\nbeat 3 7 step\n";
  ASSERT_EQ(send(stale, lines.data(), lines.size(), 0), (ssize_t)lines.size());
  const int fresh = connect_loopback(l.port());
  const std::string hello = "hello 5 1235 2 node-a\nbeat 4 1 step\n";
  ASSERT_EQ(send(fresh, hello.data(), hello.size(), 0), (ssize_t)hello.size());
  const auto got = collect(l, 3);  // the stale one's close (no rank), the fresh one's two lines
  int from_rank5 = 0;
  for (const auto& r : got) {
    if (r.rank == 5) {
      ++from_rank5;
      EXPECT_EQ(r.kind, RankReport::Kind::Message);
      EXPECT_NE(r.message.step, 3) << "the stale rank's beat was reported";
    } else {
      EXPECT_EQ(r.kind, RankReport::Kind::Closed);
      EXPECT_EQ(r.rank, -1);
    }
  }
  EXPECT_EQ(from_rank5, 2);
  char c;
  EXPECT_EQ(recv(stale, &c, 1, 0), 0);  // closed by the listener
  EXPECT_EQ(l.connected(), 1);
  close(stale);
  close(fresh);
}
