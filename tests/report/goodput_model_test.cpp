// report/goodput_model: expected goodput with failures. The numbers are chosen so that the
// answers can be worked out by hand: 1,000 GPUs at 0.0864 interruptions per GPU-day fail once
// every 1,000 s; a 5 s save gives Young's interval sqrt(2 x 5 x 1000) = 100 s = 10 steps of 10 s.
#include <gtest/gtest.h>

#include <cmath>

#include "report/goodput_model.h"
#include "report/goodput_report.h"

namespace duet::report {
namespace {

GoodputModelInputs hand_inputs() {
  GoodputModelInputs in;
  in.step_time_s = 10, in.tokens_per_step = 1e6, in.gpus = 1000;
  in.interruptions_per_gpu_day = 0.0864, in.save_s = 5, in.restart_s = 47.5;
  return in;
}

TEST(GoodputModel, YoungDalyIntervalAndTheGoodputThere) {
  const GoodputModel m = expected_goodput(hand_inputs());
  EXPECT_NEAR(m.mtbf_cluster_s, 1000, 1e-9);
  EXPECT_NEAR(m.interruptions_per_day, 86.4, 1e-9);
  EXPECT_NEAR(m.optimal_interval_s, 100, 1e-9);
  EXPECT_EQ(m.optimal_interval_steps, 10);
  EXPECT_EQ(m.interval_steps, 10);  // none given: the optimum
  // Period 105 s: 100/105 of it computing; a failure every 1000 s costs 47.5 + 105/2 = 100 s.
  EXPECT_NEAR(m.ettr, 100.0 / 105 * 0.9, 1e-12);
  EXPECT_NEAR(m.checkpoint_fraction, 5.0 / 105 * 0.9, 1e-12);
  EXPECT_NEAR(m.failure_fraction, 0.1, 1e-12);
  EXPECT_NEAR(m.tokens_per_day_no_failures, 1e5 * 86400, 1e-3);
  EXPECT_NEAR(m.tokens_per_day, 1e5 * 86400 * 100.0 / 105 * 0.9, 1e-3);
  // 1000 GPUs x 24 h per 7.4057e9 tokens.
  EXPECT_NEAR(m.gpu_hours_per_trillion_tokens, 1000 * 24 * 1e12 / (8.64e9 * 100.0 / 105 * 0.9), 1e-3);
}

TEST(GoodputModel, TheOptimumBeatsHalfAndTwiceTheInterval) {
  GoodputModelInputs in = hand_inputs();
  const double best = expected_goodput(in).ettr;
  in.interval_steps = 5;  // 50/55 x (1 - (47.5 + 27.5)/1000) = 0.8409
  const double half = expected_goodput(in).ettr;
  EXPECT_NEAR(half, 50.0 / 55 * 0.925, 1e-12);
  in.interval_steps = 20;  // 200/205 x (1 - (47.5 + 102.5)/1000) = 0.8293
  const double twice = expected_goodput(in).ettr;
  EXPECT_NEAR(twice, 200.0 / 205 * 0.85, 1e-12);
  EXPECT_GT(best, half);
  EXPECT_GT(best, twice);
  EXPECT_NEAR(expected_goodput(in).ettr_at_optimal, best, 1e-12);
}

TEST(GoodputModel, NoFailuresLeavesOnlyTheSaves) {
  GoodputModelInputs in = hand_inputs();
  in.interruptions_per_gpu_day = 0;
  in.interval_steps = 10;
  const GoodputModel m = expected_goodput(in);
  EXPECT_TRUE(std::isinf(m.mtbf_cluster_s));
  EXPECT_EQ(m.optimal_interval_steps, 0);  // never saving is best
  EXPECT_NEAR(m.ettr, 100.0 / 105, 1e-12);
  EXPECT_DOUBLE_EQ(m.failure_fraction, 0);
}

TEST(GoodputModel, MoreFailuresLessGoodput) {
  GoodputModelInputs in = hand_inputs();
  const double base = expected_goodput(in).ettr;
  in.interruptions_per_gpu_day *= 4;  // M = 250 s: interval sqrt(2 x 5 x 250) = 50 s
  const GoodputModel m = expected_goodput(in);
  EXPECT_NEAR(m.optimal_interval_s, 50, 1e-9);
  EXPECT_NEAR(m.ettr, 50.0 / 55 * (1 - (47.5 + 27.5) / 250), 1e-12);
  EXPECT_LT(m.ettr, base);
}

TEST(GoodputModel, LlamaThreeRate) {
  // 419 / (16384 x 54) per GPU-day: on 16,384 GPUs, 419 in 54 days.
  GoodputModelInputs in = hand_inputs();
  in.gpus = 16384, in.interruptions_per_gpu_day = kLlama3InterruptionsPerGpuDay;
  EXPECT_NEAR(expected_goodput(in).interruptions_per_day * 54, 419, 1e-9);
}

TEST(GoodputModel, RefusesAZeroStep) {
  GoodputModelInputs in = hand_inputs();
  in.step_time_s = 0;
  EXPECT_THROW(expected_goodput(in), std::invalid_argument);
}

TEST(GoodputModel, ReportNamesTheFormulaAndTheNumbers) {
  const GoodputModelInputs in = hand_inputs();
  Report r;
  add_expected_goodput(r, in, expected_goodput(in), "given");
  double optimal = 0;
  for (const auto& f : r.headline)
    if (f.key == "optimal_checkpoint_interval_s") optimal = f.number;
  EXPECT_NEAR(optimal, 100, 1e-9);
  EXPECT_NE(render_markdown(r).find("Young/Daly"), std::string::npos);
}

}  // namespace
}  // namespace duet::report
