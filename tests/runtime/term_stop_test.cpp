// SIGTERM while training runs asks for a stop instead of ending the process; "abort" from the
// supervisor still ends it by SIGTERM. Each case runs in a child process (a signal's default
// action would end the test binary).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

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

}  // namespace

TEST(TermStop, SigtermWhileInstalledIsARequestNotAnEnd) {
  const int status = in_child([] {
    const TermStop t;
    if (TermStop::requested()) return 2;
    kill(getpid(), SIGTERM);
    return TermStop::requested() ? 0 : 3;
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
      if (!TermStop::requested()) return 3;
    }
    kill(getpid(), SIGTERM);  // the default action again
    return 4;
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
    { const TermStop first; kill(getpid(), SIGTERM); }
    const TermStop second;
    return TermStop::requested() ? 5 : 0;
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}
