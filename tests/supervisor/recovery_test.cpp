// supervisor/recovery.h: the parts of a recovery, from times on the supervisor's clock and
// durations the ranks measured.
#include "supervisor/recovery.h"

#include <gtest/gtest.h>

namespace duet::supervisor {
namespace {

FaultClock fault_at(double t) {
  FaultClock f;
  f.kind = "rank-died", f.fault = t, f.detected = t + 0.05, f.gone = t + 0.55, f.fault_step = 7;
  return f;
}

// Two ranks; times chosen so each part is a round number.
AttemptClock attempt() {
  AttemptClock a(2);
  a.launched = 11.0;                 // after 0.45 s of backoff (gone at 10.55)
  a.age = {0.9, 1.0};                // hello at 12.3 and 12.5: processes started 11.4 and 11.5
  a.hello = {12.3, 12.5};
  a.mpi_init = {0.3, 0.4};           // MPI ready at 11.7 and 11.9
  a.loaded = {12.8, 12.9};
  a.checkpoint_step = 4;
  a.first_step = 14.0;
  return a;
}

TEST(Recovery, PartsFollowTheTimelineAndAddUp) {
  const auto r = account_recovery(fault_at(10.0), attempt());
  ASSERT_TRUE(r);
  EXPECT_NEAR(r->detection_s, 0.05, 1e-9);
  EXPECT_NEAR(r->teardown_s, 0.50, 1e-9);
  EXPECT_NEAR(r->backoff_s, 0.45, 1e-9);
  EXPECT_NEAR(r->launch_s, 0.5, 1e-9);     // the last process started at 11.5
  EXPECT_NEAR(r->mpi_init_s, 0.4, 1e-9);   // ... and was ready at 11.9
  EXPECT_NEAR(r->setup_s, 0.6, 1e-9);      // the last hello at 12.5
  EXPECT_NEAR(r->load_s, 0.4, 1e-9);       // the last load at 12.9
  EXPECT_NEAR(r->first_step_s, 1.1, 1e-9);
  EXPECT_NEAR(r->total_s, 4.0, 1e-9);
  const double sum = r->detection_s + r->teardown_s + r->backoff_s + r->launch_s + r->mpi_init_s + r->setup_s +
                     r->load_s + r->first_step_s;
  EXPECT_NEAR(sum, r->total_s, 1e-9);
  EXPECT_EQ(r->recomputed_steps, 3);  // steps 5, 6, 7 again
  EXPECT_EQ(r->fault_kind, "rank-died");
}

TEST(Recovery, NothingUntilTheFirstStepAndEveryRankReported) {
  AttemptClock a = attempt();
  a.first_step = -1;
  EXPECT_FALSE(account_recovery(fault_at(10), a));
  a = attempt();
  a.loaded[1] = -1;
  EXPECT_FALSE(account_recovery(fault_at(10), a));
  a = attempt();
  a.checkpoint_step = -1;
  EXPECT_FALSE(account_recovery(fault_at(10), a));
}

// /proc start times come in clock ticks: a rank can appear to have started a little before
// its launch. No part goes negative, and the parts still add up.
TEST(Recovery, CoarseClocksNeverMakeAPartNegative) {
  AttemptClock a = attempt();
  a.age = {1.3, 1.6};  // would put the start before the launch
  a.mpi_init = {2.0, 2.0};  // and MPI readiness after the hello
  const auto r = account_recovery(fault_at(10), a);
  ASSERT_TRUE(r);
  for (double p : {r->detection_s, r->teardown_s, r->backoff_s, r->launch_s, r->mpi_init_s, r->setup_s, r->load_s,
                   r->first_step_s})
    EXPECT_GE(p, 0);
  EXPECT_NEAR(r->detection_s + r->teardown_s + r->backoff_s + r->launch_s + r->mpi_init_s + r->setup_s + r->load_s +
                  r->first_step_s,
              r->total_s, 1e-9);
}

}  // namespace
}  // namespace duet::supervisor
