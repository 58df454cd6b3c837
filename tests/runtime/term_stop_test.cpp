// SIGTERM while training runs asks for a stop instead of ending the process; "abort" from the
// supervisor still ends it by SIGTERM. Each case runs in a child process (a signal's default
// action would end the test binary). The signal is taken on a thread of its own: a kill() has
// returned before the request is seen, so the cases wait for it (up to 10 s).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "kernels/gemm.h"
#include "runtime/term_stop.h"

using duet::runtime::die_by_sigterm;
using duet::runtime::TermStop;

namespace {

// The child's wait status.
int in_child(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

bool wait_requested() {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!TermStop::requested() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return TermStop::requested();
}

// What the process does while a SIGTERM it cannot survive ends it: at most 10 s.
int wait_to_be_ended(int code) {
  for (int i = 0; i < 10000; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return code;
}

}  // namespace

TEST(TermStop, SigtermWhileInstalledIsARequestNotAnEnd) {
  const int status = in_child([] {
    const TermStop t;
    if (TermStop::requested()) return 2;
    kill(getpid(), SIGTERM);
    return wait_requested() ? 0 : 3;
  });
  ASSERT_TRUE(WIFEXITED(status)) << "the process ended by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(TermStop, TheLastOneGoneSigtermEndsTheProcessAgain) {
  const int status = in_child([] {
    {
      const TermStop outer;
      { const TermStop inner; }  // ranks as threads of one process: the first one out keeps it
      kill(getpid(), SIGTERM);
      if (!wait_requested()) return 3;
    }
    kill(getpid(), SIGTERM);  // the default action again
    return wait_to_be_ended(4);
  });
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

TEST(TermStop, ATornDownRankStillEndsBySigterm) {
  const int status = in_child([]() -> int {
    const TermStop t;
    die_by_sigterm();
  });
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

TEST(TermStop, ANewTrainingLoopStartsWithNothingAsked) {
  const int status = in_child([] {
    {
      const TermStop first;
      kill(getpid(), SIGTERM);
      if (!wait_requested()) return 3;
    }
    const TermStop second;
    return TermStop::requested() ? 5 : 0;
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// Why the signal has a thread of its own: SIGTERMs that come while the main thread multiplies
// (as a rank's does; scancel signals every rank) must leave the products alone. A handler run
// on that thread, inside oneDNN's SGEMM (whose kernels point the stack pointer into the heap),
// corrupted its heap ("corrupted size vs. prev_size"): this child died by SIGABRT within a few
// hundred products when TermStop installed a handler.
TEST(TermStop, SigtermsWhileTheMainThreadMultipliesLeaveItAlone) {
  const int status = in_child([]() -> int {
    duet::runtime::route_sigterm();  // what duet train does first
    const TermStop t;
    const int M = 128, N = 256, K = 512;
    std::vector<float> a(M * K), b(K * N), want(M * N), c(M * N);
    for (size_t i = 0; i < a.size(); ++i) a[i] = (float)(i % 13) * 0.25f - 1.5f;
    for (size_t i = 0; i < b.size(); ++i) b[i] = (float)(i % 7) * 0.5f - 1.0f;
    duet::cpu::gemm(false, false, M, N, K, 1.f, a.data(), K, b.data(), N, 0.f, want.data(), N);
    std::atomic<bool> done{false};
    std::atomic<int> sent{0};
    std::thread sender([&] {  // started after the routing: it blocks SIGTERM too
      while (!done.load()) {
        kill(getpid(), SIGTERM);
        sent.fetch_add(1);
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
    });
    int wrong = 0;
    for (int i = 0; i < 400; ++i) {
      duet::cpu::gemm(false, false, M, N, K, 1.f, a.data(), K, b.data(), N, 0.f, c.data(), N);
      duet::cpu::gemm(true, false, K, N, M, 1.f, a.data(), K, c.data(), N, 0.f, b.data(), N);
      duet::cpu::gemm(false, false, M, N, K, 1.f, a.data(), K, b.data(), N, 0.f, c.data(), N);
      for (size_t j = 0; j < b.size(); ++j) b[j] = (float)(j % 7) * 0.5f - 1.0f;
      duet::cpu::gemm(false, false, M, N, K, 1.f, a.data(), K, b.data(), N, 0.f, c.data(), N);
      if (std::memcmp(c.data(), want.data(), c.size() * sizeof(float)) != 0) ++wrong;
    }
    done.store(true);
    sender.join();
    // Ends while `t` lives: the last SIGTERM sent may not be taken yet, and with no TermStop
    // left it would end the child.
    if (sent.load() < 100) _exit(2);  // the products outran the signals: nothing was tested
    if (!wait_requested()) _exit(3);
    _exit(wrong ? 4 : 0);
  });
  ASSERT_TRUE(WIFEXITED(status)) << "the process ended by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}
