// Pipelined training under mpirun agrees with one process on the same global batch:
// first-step loss to 1e-6 relative, every loss of 12 steps to 1e-4; the same layout twice is
// bit-identical. Each case is a real `mpirun -np N duet train` (oversubscribed on small
// machines).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <regex>
#include <vector>

#include "tests/apps/cli_util.h"

using namespace duet::test;
namespace fs = std::filesystem;

namespace {

const char* kArgs = " --train.steps 12 --train.log_every 12 --train.eval_batches 1";



class PipelineVsSingle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(scratch_dir("pipeline"));
    const auto r = run_duet(std::string("train") + kArgs + " --run.dir " + dir_->string() + " --run.name single");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    reference_ = new std::vector<double>(loss_values(*dir_ / "single/metrics.jsonl"));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete reference_;
  }

  std::vector<double> run_layout(const std::string& name, int np, const std::string& layout) {
    const auto r = run_command(mpirun_train(np) + kArgs + " --run.dir " + dir_->string() + " --run.name " + name + " " + layout);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return loss_values(*dir_ / name / "metrics.jsonl");
  }

  void expect_agrees(const std::vector<double>& got) {
    const auto& ref = *reference_;
    ASSERT_EQ(ref.size(), 12u);
    ASSERT_EQ(got.size(), ref.size());
    EXPECT_LE(std::abs(got[0] - ref[0]) / ref[0], 1e-6) << got[0] << " vs " << ref[0];
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_LE(std::abs(got[i] - ref[i]) / ref[i], 1e-4) << "step " << i + 1 << ": " << got[i] << " vs " << ref[i];
    EXPECT_LT(ref.back(), ref.front() - 1.0);  // and it is training, not standing still
  }

  static fs::path* dir_;
  static std::vector<double>* reference_;
};
fs::path* PipelineVsSingle::dir_ = nullptr;
std::vector<double>* PipelineVsSingle::reference_ = nullptr;

}  // namespace

TEST_F(PipelineVsSingle, PP4_1F1B) { expect_agrees(run_layout("1f1b", 4, "--parallel.pp 4 --parallel.schedule 1f1b")); }
TEST_F(PipelineVsSingle, PP4_ZB1P) { expect_agrees(run_layout("zb1p", 4, "--parallel.pp 4 --parallel.schedule zb1p")); }
TEST_F(PipelineVsSingle, PP4_DualPipe) {
  expect_agrees(run_layout("dualpipe", 4, "--parallel.pp 4 --parallel.schedule dualpipe"));
}
TEST_F(PipelineVsSingle, PP4_DualPipeV) {
  expect_agrees(run_layout("dualpipev", 4, "--parallel.pp 4 --parallel.schedule dualpipev"));
}
TEST_F(PipelineVsSingle, PP2xDP2_EP2_DualPipe) {
  expect_agrees(run_layout("pp2dp2ep2", 4, "--parallel.pp 2 --parallel.dp 2 --parallel.ep 2 --parallel.schedule dualpipe"));
}
TEST_F(PipelineVsSingle, SameLayoutTwiceIsBitIdentical) {
  const auto a = run_layout("again-a", 4, "--parallel.pp 2 --parallel.dp 2 --parallel.ep 2");
  const auto b = run_layout("again-b", 4, "--parallel.pp 2 --parallel.dp 2 --parallel.ep 2");
  ASSERT_EQ(a.size(), 12u);
  EXPECT_EQ(a, b);
}

TEST(PipelineLayout, WrongRankCountOrScheduleRuleIsAClearError) {
  auto r = run_command(mpirun_train(2) + " --parallel.pp 4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("parallel.pp"), std::string::npos) << r.output;
  // global_batch 4 gives 4 micro-batches per pipeline; DualPipe at PP 4 needs at least 8.
  r = run_command(mpirun_train(4) + " --parallel.pp 4 --train.global_batch 4 --train.steps 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("micro-batches per pipeline"), std::string::npos) << r.output;
}

// ZeRO-1: with DP 2 each rank keeps optimizer moments for about half of what it holds;
// on one process, for all of it.
TEST(PipelineLayout, Zero1ShardsOptimizerState) {
  const auto dir = scratch_dir("zero1");
  auto share = [](const std::string& out) {
    std::smatch m;
    EXPECT_TRUE(std::regex_search(out, m, std::regex("ZeRO-1: rank 0 keeps AdamW moments for ([0-9]+) of the ([0-9]+)"))) << out;
    return m.size() == 3 ? std::stod(m[1]) / std::stod(m[2]) : -1.0;
  };
  const auto two = run_command(mpirun_train(2) + " --train.steps 1 --train.eval_batches 1 --parallel.dp 2 --run.dir " + dir.string());
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NEAR(share(two.output), 0.5, 0.01);
  const auto one = run_duet("train --train.steps 1 --train.eval_batches 1 --run.dir " + dir.string());
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_NEAR(share(one.output), 1.0, 0.01);
  fs::remove_all(dir);
}

// A rank that fails says who, where and why, and takes the whole job down: no rank is left
// waiting for it.
TEST(PipelineLayout, FailingRankAbortsTheWholeJob) {
  const auto dir = scratch_dir("fail");
  const auto r = run_command(mpirun_train(4, "timeout 120 ") + " --parallel.pp 4 --train.steps 6 --train.eval_batches 1" +
                             " --runtime.fail_rank 2 --runtime.fail_step 3 --run.dir " + dir.string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 124) << "the job hung instead of aborting";
  EXPECT_TRUE(std::regex_search(r.output, std::regex("rank 2 on [^ :]+: injected failure"))) << r.output;
  fs::remove_all(dir);
}

// The modelled network latency (runtime.comm_delay_us, stamped on each message) and the
// overlap mode change when things happen, never what is computed: with the weight passes
// deferred into communication waits (overlap on) or run in place (off), every loss is the
// same bit for bit, and each step reports the latency it added (messages × delay).
TEST_F(PipelineVsSingle, LatencyAndOverlapModeDoNotChangeResults) {
  const std::string layout = "--parallel.pp 2 --parallel.dp 2 --parallel.ep 2 ";
  const auto base = run_layout("lat-0", 4, layout);
  const auto delayed = run_layout("lat-300", 4, layout + "--runtime.comm_delay_us 300");
  const auto off = run_layout("lat-300-off", 4, layout + "--runtime.comm_delay_us 300 --runtime.overlap false");
  ASSERT_EQ(base.size(), 12u);
  EXPECT_EQ(base, delayed);
  EXPECT_EQ(base, off);
  std::ifstream in(*dir_ / "lat-300/metrics.jsonl");
  std::smatch m;
  int rows = 0;
  for (std::string line; std::getline(in, line);) {
    if (!std::regex_search(line, m, std::regex("\"comm_delay_added_s\":([0-9.eE+-]+)"))) continue;
    const double added = std::stod(m[1]), messages = added / 300e-6;
    EXPECT_GT(messages, 20) << line;  // dispatches, combines and sends of a rank's step
    EXPECT_NEAR(messages, std::round(messages), 1e-6) << line;
    ++rows;
  }
  EXPECT_EQ(rows, 12);
}
