// Issue 16: duet bounds OpenMP's idle spinning when the user did not choose it, before libgomp
// reads its settings (kernels/openmp_wait.h), and keeps a user's choice. Checked on what
// libgomp itself runs with: OMP_DISPLAY_ENV=verbose makes it print its settings when it
// starts (once per program start, so twice when duet starts again).
#include <gtest/gtest.h>

#include <regex>

#include "kernels/openmp_wait.h"
#include "tests/apps/cli_util.h"

using namespace duet::test;

namespace {

// `duet ARGS` with the OpenMP wait settings removed from the environment, then `env_vars` set.
CommandResult run_duet_env(const std::string& env_vars, const std::string& args) {
  return run_command(std::string("env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY -u ") + duet::cpu::kOpenmpSpinEnv +
                     " OMP_DISPLAY_ENV=verbose " + env_vars + " " + DUET_BINARY + " " + args);
}

// Every value of `name` that libgomp printed, in order.
std::vector<std::string> printed(const std::string& output, const std::string& name) {
  std::vector<std::string> out;
  const std::regex re("  " + name + " = '([^']*)'");
  for (auto it = std::sregex_iterator(output.begin(), output.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1]);
  return out;
}

}  // namespace

TEST(OpenmpWaitCli, UnsetSpinCountIsBoundedBeforeLibgompStarts) {
  const auto r = run_duet_env("", "--help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // libgomp's default in the first start (300,000 in GCC 12's), the bound in the second: the
  // one that runs.
  const auto spin = printed(r.output, "GOMP_SPINCOUNT");
  ASSERT_EQ(spin.size(), 2u) << r.output;
  EXPECT_NE(spin[0], duet::cpu::kOpenmpSpinCount) << r.output;
  EXPECT_EQ(spin[1], duet::cpu::kOpenmpSpinCount) << r.output;
  EXPECT_NE(r.output.find("usage: duet"), std::string::npos) << r.output;  // same arguments
}

TEST(OpenmpWaitCli, UserSpinCountIsKept) {
  const auto r = run_duet_env("GOMP_SPINCOUNT=123456", "--help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(printed(r.output, "GOMP_SPINCOUNT"), std::vector<std::string>{"123456"}) << r.output;
}

TEST(OpenmpWaitCli, UserWaitPolicyIsKept) {
  const auto passive = run_duet_env("OMP_WAIT_POLICY=passive", "--help");
  EXPECT_EQ(printed(passive.output, "GOMP_SPINCOUNT"), std::vector<std::string>{"0"}) << passive.output;
  const auto active = run_duet_env("OMP_WAIT_POLICY=active", "--help");
  EXPECT_EQ(printed(active.output, "OMP_WAIT_POLICY"), std::vector<std::string>{"ACTIVE"}) << active.output;
  EXPECT_NE(printed(active.output, "GOMP_SPINCOUNT"), std::vector<std::string>{duet::cpu::kOpenmpSpinCount})
      << active.output;
}

// The ranks on other nodes get the setting from mpirun (-x), bounded or the user's.
TEST(OpenmpWaitCli, LaunchPassesTheSettingToTheRanks) {
  const auto bounded = run_duet_env("", "launch --dry-run --parallel.pp 2");
  EXPECT_EQ(bounded.exit_code, 0) << bounded.output;
  EXPECT_NE(bounded.output.find("-x GOMP_SPINCOUNT"), std::string::npos) << bounded.output;
  EXPECT_EQ(bounded.output.find("-x OMP_WAIT_POLICY"), std::string::npos) << bounded.output;
  const auto passive = run_duet_env("OMP_WAIT_POLICY=passive", "launch --dry-run --parallel.pp 2");
  EXPECT_EQ(passive.exit_code, 0) << passive.output;
  EXPECT_NE(passive.output.find("-x OMP_WAIT_POLICY"), std::string::npos) << passive.output;
  EXPECT_EQ(passive.output.find("-x GOMP_SPINCOUNT"), std::string::npos) << passive.output;
}
