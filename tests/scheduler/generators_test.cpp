// Generators (1F1B, ZB1P and the rules of all four), schedule kinds and placement.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "scheduler/placement.h"
#include "scheduler/schedule.h"
#include "scheduler/text_format.h"
#include "scheduler/validate.h"

namespace duet::sched {
namespace {

std::string line(const Schedule& s, int rank) {
  std::string out;
  for (const Op& op : s.ops[rank]) out += (out.empty() ? "" : " ") + format_op(op);
  return out;
}

// The message of the std::invalid_argument that f throws ("" if none).
template <class Fn>
std::string error_of(Fn f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(ScheduleKind, ParsesAndFormatsEveryName) {
  for (const char* name : {"1f1b", "zb1p", "dualpipe", "dualpipev"})
    EXPECT_EQ(format_schedule_kind(parse_schedule_kind(name)), name);
  EXPECT_EQ(parse_schedule_kind("dualpipev"), ScheduleKind::DualPipeV);
  std::string msg = error_of([] { parse_schedule_kind("gpipe"); });
  EXPECT_NE(msg.find("gpipe"), std::string::npos);
  EXPECT_NE(msg.find("1f1b, zb1p, dualpipe, dualpipev"), std::string::npos);
}

TEST(OneFOneB, FourStagesSixMicroBatches) {
  Schedule s = make_1f1b_schedule(4, 6);
  EXPECT_EQ(line(s, 0), "F0:0 F0:1 F0:2 F0:3 B0:0 F0:4 B0:1 F0:5 B0:2 B0:3 B0:4 B0:5");
  EXPECT_EQ(line(s, 3), "F0:0 B0:0 F0:1 B0:1 F0:2 B0:2 F0:3 B0:3 F0:4 B0:4 F0:5 B0:5");
}

TEST(OneFOneB, FewerMicroBatchesThanStages) {
  Schedule s = make_1f1b_schedule(4, 2);
  EXPECT_EQ(line(s, 0), "F0:0 F0:1 B0:0 B0:1");
  EXPECT_TRUE(validate_schedule(s).ok());
}

TEST(ZB1P, DefersWeightsByTheStageIndex) {
  Schedule s = make_zb1p_schedule(4, 6);
  // The last stage lets 3 weights wait; the first runs each W right after its I.
  EXPECT_EQ(line(s, 0), "F0:0 F0:1 F0:2 F0:3 I0:0 W0:0 F0:4 I0:1 W0:1 F0:5 I0:2 W0:2 I0:3 W0:3 I0:4 W0:4 I0:5 W0:5");
  EXPECT_EQ(line(s, 3), "F0:0 I0:0 F0:1 I0:1 F0:2 I0:2 F0:3 I0:3 W0:0 F0:4 I0:4 W0:1 F0:5 I0:5 W0:2 W0:3 W0:4 W0:5");
}

TEST(ZB1P, EveryStageHoldsAtMostRanksMicroBatchesUntilTheirWeights) {
  // ZB-H1 keeps 1F1B's peak memory: from F to W at most N micro-batches per stage.
  for (int N : {2, 4, 8}) {
    for (int M : {1, N, 3 * N}) {
      Schedule s = make_zb1p_schedule(N, M);
      ASSERT_TRUE(validate_schedule(s).ok()) << N << " " << M;
      for (int r = 0; r < N; ++r) {
        int held = 0, peak = 0;
        for (const Op& op : s.ops[r]) {
          if (op.kind == OpKind::F) peak = std::max(peak, ++held);
          if (op.kind == OpKind::W) --held;
        }
        EXPECT_EQ(held, 0);
        EXPECT_EQ(peak, std::min(N, M)) << "N=" << N << " M=" << M << " rank " << r;
      }
    }
  }
}

TEST(MakeSchedule, EveryKindValidatesOverManyShapes) {
  for (int N : {1, 2, 3, 4, 6, 8}) {
    for (int M : {1, 2, N, 2 * N, 2 * N + 1, 2 * N + 2, 5 * N}) {
      for (auto kind : {ScheduleKind::OneFOneB, ScheduleKind::ZB1P, ScheduleKind::DualPipe, ScheduleKind::DualPipeV}) {
        Schedule s;
        try {
          s = make_schedule(kind, N, M);
        } catch (const std::invalid_argument&) {
          continue;  // rejected combinations are tested below
        }
        ValidationReport rep = validate_schedule(s);
        EXPECT_TRUE(rep.ok()) << format_schedule_kind(kind) << " N=" << N << " M=" << M << ": "
                              << (rep.errors.empty() ? "" : rep.errors[0].to_string());
      }
    }
  }
}

TEST(MakeSchedule, RejectsInvalidCombinationsNamingTheRule) {
  EXPECT_NE(error_of([] { make_schedule(ScheduleKind::OneFOneB, 0, 4); }).find("ranks must be >= 1"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(ScheduleKind::ZB1P, 4, 0); }).find("micro-batches must be >= 1"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(ScheduleKind::DualPipe, 5, 20); }).find("ranks must be even"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(ScheduleKind::DualPipe, 4, 9); }).find("micro-batches must be even"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(ScheduleKind::DualPipe, 4, 6); }).find("micro-batches must be >= 2 x ranks = 8"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_schedule(ScheduleKind::DualPipeV, 4, 7); }).find("micro-batches must be >= 2 x ranks = 8"),
            std::string::npos);
  EXPECT_EQ(error_of([] { make_schedule(ScheduleKind::DualPipeV, 3, 7); }), "");  // odd is fine for V
  EXPECT_EQ(error_of([] { make_schedule(ScheduleKind::DualPipe, 4, 8); }), "");
}

TEST(MakeSchedule, MicroBatchesPerDirection) {
  EXPECT_EQ(make_schedule(ScheduleKind::DualPipe, 4, 12).microbatches_per_dir(), 6);
  EXPECT_EQ(make_schedule(ScheduleKind::DualPipeV, 4, 12).microbatches_per_dir(), 12);
  EXPECT_EQ(make_schedule(ScheduleKind::OneFOneB, 4, 12).microbatches_per_dir(), 12);
}

TEST(Placement, DualPipeTwoPipelinesInOppositeDirections) {
  Placement p(ScheduleKind::DualPipe, 8);
  EXPECT_EQ(p.num_dirs(), 2);
  EXPECT_EQ(p.num_model_copies(), 2);
  EXPECT_EQ(p.num_stages(), 8);
  EXPECT_EQ(p.stage_of(2, 0), 2);
  EXPECT_EQ(p.stage_of(2, 1), 5);
  EXPECT_EQ(p.slot_of(1, 5), (Slot{2, 1}));
  EXPECT_EQ(p.next_rank(2, 0), 3);
  EXPECT_EQ(p.prev_rank(2, 0), 1);
  EXPECT_EQ(p.next_rank(2, 1), 1);
  EXPECT_EQ(p.prev_rank(2, 1), 3);
  EXPECT_TRUE(p.is_last_stage(7, 0));
  EXPECT_TRUE(p.is_last_stage(0, 1));
  EXPECT_TRUE(p.is_first_stage(0, 0));
  EXPECT_TRUE(p.is_first_stage(7, 1));
  EXPECT_FALSE(p.slot_of(0, 8).valid());
}

TEST(Placement, DualPipeVTurnsOnTheLastRank) {
  Placement p(ScheduleKind::DualPipeV, 4);
  EXPECT_EQ(p.num_model_copies(), 1);
  EXPECT_EQ(p.num_stages(), 8);
  EXPECT_EQ(p.stage_of(1, 0), 1);
  EXPECT_EQ(p.stage_of(1, 1), 6);
  EXPECT_EQ(p.next(3, 0), (Slot{3, 1}));  // stage 3 -> stage 4, both on rank 3
  EXPECT_EQ(p.prev(3, 1), (Slot{3, 0}));
  EXPECT_EQ(p.next(1, 1), (Slot{0, 1}));
  EXPECT_TRUE(p.is_last_stage(0, 1));
  EXPECT_TRUE(p.is_first_stage(0, 0));
  for (int s = 0; s < 8; ++s) {
    Slot slot = p.slot_of(0, s);
    EXPECT_EQ(p.stage_of(slot.rank, slot.dir), s);
  }
}

TEST(Placement, OneFOneBIsAChain) {
  Placement p(ScheduleKind::ZB1P, 3);
  EXPECT_EQ(p.num_dirs(), 1);
  EXPECT_EQ(p.next_rank(0, 0), 1);
  EXPECT_EQ(p.next_rank(2, 0), -1);
  EXPECT_EQ(p.prev_rank(0, 0), -1);
}

}  // namespace
}  // namespace duet::sched
