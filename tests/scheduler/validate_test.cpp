// The validator: generated schedules pass; each broken rule is reported with rank, position
// and rule name.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "scheduler/text_format.h"
#include "scheduler/validate.h"

namespace duet::sched {
namespace {

Schedule parse(const char* text, ScheduleKind kind) { return parse_schedule_text(text, kind); }

// True when the report has an error of `rule` at (rank, position).
::testing::AssertionResult has_error(const ValidationReport& rep, int rank, int position, const std::string& rule) {
  for (const auto& e : rep.errors)
    if (e.rank == rank && e.position == position && e.rule == rule) return ::testing::AssertionSuccess();
  auto f = ::testing::AssertionFailure() << "no " << rule << " error at rank " << rank << " op " << position << "; got:";
  for (const auto& e : rep.errors) f << "\n  " << e.to_string();
  return f;
}

TEST(Validate, GeneratedSchedulesPassWithPeakActivations) {
  for (int N : {1, 2, 4, 7}) {
    for (int M : {1, 3, N, 3 * N}) {
      ValidationReport rep = validate_schedule(make_1f1b_schedule(N, M));
      ASSERT_TRUE(rep.ok());
      for (int r = 0; r < N; ++r) EXPECT_EQ(rep.peak_activations[r], std::min(N - r, M)) << N << " " << M << " " << r;
      ValidationReport zb = validate_schedule(make_zb1p_schedule(N, M));
      ASSERT_TRUE(zb.ok());
      EXPECT_EQ(zb.peak_activations, rep.peak_activations);
    }
  }
}

TEST(Validate, BackwardBeforeForward) {
  auto rep = validate_schedule(parse("0: F0:0 F0:1 B0:0 B0:1\n1: B0:0 F0:0 F0:1 B0:1\n", ScheduleKind::OneFOneB));
  EXPECT_TRUE(has_error(rep, 1, 0, "backward-after-forward"));
  EXPECT_EQ(rep.errors[0].to_string(),
            "rank 1, op 0 (B0:0): backward of micro-batch 0 dir 0 runs before its forward F0:0 [backward-after-forward]");
}

TEST(Validate, ForwardTwiceAndMissing) {
  auto rep = validate_schedule(parse("0: F0:0 F0:0 B0:0 B0:1\n1: F0:0 B0:0 F0:1 B0:1\n", ScheduleKind::OneFOneB));
  EXPECT_TRUE(has_error(rep, 0, 1, "forward-once"));
  EXPECT_TRUE(has_error(rep, 0, -1, "forward-once"));  // F0:1 never runs
  EXPECT_TRUE(has_error(rep, 0, 3, "backward-after-forward"));
}

TEST(Validate, BackwardTwiceAndMissing) {
  auto rep = validate_schedule(parse("0: F0:0 B0:0 F0:1 B0:0\n1: F0:0 B0:0 F0:1 B0:1\n", ScheduleKind::OneFOneB));
  EXPECT_TRUE(has_error(rep, 0, 3, "backward-once"));
  EXPECT_TRUE(has_error(rep, 0, -1, "backward-once"));
}

TEST(Validate, WeightRules) {
  // A W with no deferred I, a W after a full B, a second W, an I without a W.
  auto rep = validate_schedule(
      parse("0: F0:0 W0:0 I0:0 W0:0 W0:0 F0:1 B0:1 W0:1 F0:2 I0:2\n", ScheduleKind::ZB1P));
  EXPECT_TRUE(has_error(rep, 0, 1, "weight-after-input"));  // before its I
  EXPECT_TRUE(has_error(rep, 0, 4, "weight-after-input"));  // second W
  EXPECT_TRUE(has_error(rep, 0, 7, "weight-after-input"));  // full backward
  EXPECT_TRUE(has_error(rep, 0, 9, "weight-after-input"));  // I0:2 never gets its W
  EXPECT_FALSE(has_error(rep, 0, 3, "weight-after-input"));
}

TEST(Validate, WeightsRunFirstInFirstOut) {
  Schedule s = make_zb1p_schedule(4, 6);  // rank 3 defers W0:0..W0:2
  auto& ops = s.ops[3];
  auto w0 = std::find(ops.begin(), ops.end(), Op{OpKind::W, 0, 0});
  auto w1 = std::find(ops.begin(), ops.end(), Op{OpKind::W, 0, 1});
  std::iter_swap(w0, w1);
  auto rep = validate_schedule(s);
  EXPECT_TRUE(has_error(rep, 3, static_cast<int>(w0 - ops.begin()), "weight-fifo"));
  EXPECT_EQ(rep.errors.size(), 1u);
  EXPECT_NE(rep.errors[0].message.find("W0:1 runs before W0:0"), std::string::npos) << rep.errors[0].message;
}

TEST(Validate, CrossRankDeadlock) {
  // Each stage orders the two micro-batches differently: stage 0 waits for the gradient of
  // micro-batch 0, which stage 1 only makes after the activation of micro-batch 1, which
  // stage 0 only sends after that gradient.
  auto rep = validate_schedule(parse("0: F0:0 B0:0 F0:1 B0:1\n1: F0:1 B0:1 F0:0 B0:0\n", ScheduleKind::OneFOneB));
  EXPECT_TRUE(has_error(rep, 0, 1, "deadlock"));
  EXPECT_TRUE(has_error(rep, 1, 0, "deadlock"));
  EXPECT_NE(rep.errors[0].message.find("the gradient of micro-batch 0 from rank 1 dir 0, made by its op 3 (B0:0), "
                                       "but rank 1 is stuck at op 0 (F0:1)"),
            std::string::npos)
      << rep.errors[0].message;
  EXPECT_TRUE(rep.peak_activations.size() == 2);
}

TEST(Validate, LocalTurnOrderInDualPipeV) {
  // DualPipeV on 1 rank: the second leg's forward needs the first leg's output from the same
  // rank; putting it first cannot work.
  auto rep = validate_schedule(parse("0: F1:0 F0:0 B1:0 B0:0\n", ScheduleKind::DualPipeV));
  EXPECT_TRUE(has_error(rep, 0, 0, "deadlock"));
  EXPECT_NE(rep.errors[0].message.find("which comes later on this rank"), std::string::npos) << rep.errors[0].message;
  EXPECT_TRUE(validate_schedule(parse("0: F0:0 F1:0 B1:0 B0:0\n", ScheduleKind::DualPipeV)).ok());
}

TEST(Validate, OpRangeAndPairs) {
  Schedule s = make_1f1b_schedule(2, 2);
  s.ops[0].push_back({OpKind::F, 1, 0});   // 1F1B has one direction
  s.ops[1].push_back({OpKind::F, 0, 2});   // micro-batch out of range
  s.ops[1].push_back({OpKind::B, 0, 0, 1, 1});  // second half on a non-pair
  auto rep = validate_schedule(s);
  EXPECT_TRUE(has_error(rep, 0, 4, "op-range"));
  EXPECT_TRUE(has_error(rep, 1, 4, "op-range"));
  EXPECT_TRUE(has_error(rep, 1, 5, "op-range"));
  auto pair = validate_schedule(parse("0: F0:0 F1:0&B1:0 B0:0\n", ScheduleKind::DualPipeV));
  EXPECT_TRUE(has_error(pair, 0, 1, "backward-after-forward"));
}

TEST(Validate, ShapeAndErrorCap) {
  Schedule s = make_1f1b_schedule(3, 4);
  s.ops.pop_back();
  auto rep = validate_schedule(s);
  ASSERT_EQ(rep.errors.size(), 1u);
  EXPECT_EQ(rep.errors[0].rule, "shape");
  Schedule empty = make_1f1b_schedule(4, 50);
  for (auto& ops : empty.ops) ops.clear();
  EXPECT_EQ(validate_schedule(empty, 7).errors.size(), 7u);
}

TEST(Validate, HandWrittenGPipeIsValid) {
  auto rep = validate_schedule(parse("0: F0:0 F0:1 F0:2 B0:0 B0:1 B0:2\n1: F0:0 F0:1 F0:2 B0:0 B0:1 B0:2\n",
                                     ScheduleKind::OneFOneB));
  EXPECT_TRUE(rep.ok());
  EXPECT_EQ(rep.peak_activations, (std::vector<int>{3, 3}));
}

TEST(Validate, CheckScheduleThrowsWithEveryError) {
  try {
    check_schedule(parse("0: F0:0 F0:1 B0:0 B0:1\n1: B0:0 F0:0 F0:1 B0:1\n", ScheduleKind::OneFOneB));
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("invalid 1f1b schedule:\n  rank 1, op 0 (B0:0)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace duet::sched
