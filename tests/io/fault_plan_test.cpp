// io/fault_plan.h: which fault each attempt injects.
#include "io/fault_plan.h"

#include <gtest/gtest.h>

#include <csignal>

namespace duet::io {
namespace {

TEST(FaultPlan, EachAttemptGetsItsEntry) {
  RuntimeSection r;
  r.fail_plan = "1:kill:3:5,2:stop:6:9,3:killsave:2:12,4:corrupt:5:15,5:nodestop:4:17,6:killcommit:7:20";
  const auto a1 = fault_for_attempt(r, 1);
  ASSERT_TRUE(a1);
  EXPECT_EQ(a1->rank, 3);
  EXPECT_EQ(a1->step, 5);
  EXPECT_EQ(a1->signal, SIGKILL);
  EXPECT_EQ(fault_for_attempt(r, 2)->signal, SIGSTOP);
  EXPECT_EQ(fault_for_attempt(r, 3)->at, FailAt::Save);
  EXPECT_TRUE(fault_for_attempt(r, 4)->corrupt_newest);
  EXPECT_EQ(fault_for_attempt(r, 4)->rank, 0);  // rank 0 damages the checkpoint
  EXPECT_EQ(fault_for_attempt(r, 5)->scope, FailScope::Node);
  EXPECT_EQ(fault_for_attempt(r, 6)->at, FailAt::Commit);
  EXPECT_EQ(fault_for_attempt(r, 6)->rank, 0);  // rank 0 commits
  EXPECT_FALSE(fault_for_attempt(r, 7));
}

TEST(FaultPlan, WithoutAPlanTheSingleFaultStrikesTheFirstAttempts) {
  RuntimeSection r;
  EXPECT_FALSE(fault_for_attempt(r, 1));
  r.fail_rank = 2, r.fail_step = 4, r.fail_signal = SIGKILL, r.fail_attempts = 2;
  EXPECT_TRUE(fault_for_attempt(r, 1));
  EXPECT_TRUE(fault_for_attempt(r, 2));
  EXPECT_FALSE(fault_for_attempt(r, 3));
}

TEST(FaultPlan, AFullDiskSharesItsAttemptWithAnotherFault) {
  RuntimeSection r;
  r.fail_plan = "1:diskfull:2:4,1:kill:5:7,2:diskfull:0:6";
  EXPECT_EQ(fault_for_attempt(r, 1)->signal, SIGKILL);  // the kill, not the full disk
  EXPECT_EQ(full_disk_steps(r, 1, 2), std::vector<int>{4});
  EXPECT_TRUE(full_disk_steps(r, 1, 5).empty());
  EXPECT_FALSE(fault_for_attempt(r, 2));
  EXPECT_EQ(full_disk_steps(r, 2, 0), std::vector<int>{6});
}

TEST(FaultPlan, AnUnreadableCheckpointSharesItsAttemptAndStrikesOneRank) {
  RuntimeSection r;
  r.fail_plan = "1:kill:1:7,2:unreadable:1:6,2:unreadable:1:4,2:unreadable:0:9";
  EXPECT_EQ(fault_for_attempt(r, 1)->signal, SIGKILL);
  EXPECT_FALSE(fault_for_attempt(r, 2));  // nothing is killed
  EXPECT_EQ(unreadable_from(r, 2, 1), 4);  // the oldest of its entries
  EXPECT_EQ(unreadable_from(r, 2, 0), 9);
  EXPECT_FALSE(unreadable_from(r, 2, 2));
  EXPECT_FALSE(unreadable_from(r, 1, 1));
  r.fail_plan = "1:unreadable:0:3,1:kill:1:5";
  EXPECT_EQ(fault_for_attempt(r, 1)->rank, 1);
}

TEST(FaultPlan, BadEntriesNameTheKey) {
  for (const char* bad : {"1:kill:3", "x:kill:3:5", "1:explode:3:5", "0:kill:3:5", "1:kill:-1:5", "1:kill:1:5,1:stop:2:6"}) {
    try {
      parse_fault_plan(bad);
      FAIL() << bad;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("runtime.fail_plan"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace duet::io
