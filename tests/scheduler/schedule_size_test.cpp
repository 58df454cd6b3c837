// scheduler/schedule_size: the op bound holds for every generator, from the shape alone.
#include <gtest/gtest.h>

#include "scheduler/schedule.h"
#include "scheduler/schedule_size.h"

namespace duet::sched {
namespace {

TEST(ScheduleSize, BoundsEveryGeneratedSchedule) {
  for (auto kind : {ScheduleKind::OneFOneB, ScheduleKind::ZB1P, ScheduleKind::DualPipe, ScheduleKind::DualPipeV})
    for (int ranks : {2, 4, 8})
      for (int mb : {ranks * 2, ranks * 4}) {
        Schedule s;
        try {
          s = make_schedule(kind, ranks, mb);
        } catch (const std::invalid_argument&) {
          continue;  // a shape this kind does not take
        }
        int64_t ops = 0;
        for (const auto& r : s.ops) ops += (int64_t)r.size();
        EXPECT_LE(ops, schedule_op_bound(kind, ranks, mb)) << format_schedule_kind(kind) << " " << ranks << "x" << mb;
      }
}

TEST(ScheduleSize, SaturatesInsteadOfOverflowing) {
  EXPECT_GT(schedule_op_bound(ScheduleKind::DualPipeV, 2'000'000'000, 2'000'000'000), kMaxScheduleOps);
  EXPECT_GT(schedule_op_bound(ScheduleKind::DualPipe, 100000, 100000), kMaxScheduleOps);
  EXPECT_EQ(schedule_op_bound(ScheduleKind::OneFOneB, 0, 10), 0);
}

}  // namespace
}  // namespace duet::sched
