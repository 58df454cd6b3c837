// `duet train` end to end: run directory contents, determinism, config errors.
#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <vector>

#include "kernels/backend.h"
#include "tests/apps/cli_util.h"

using namespace duet::test;
namespace fs = std::filesystem;

namespace {

const char* kShort = "--train.steps 4 --train.log_every 2 --train.eval_batches 1 --train.global_batch 4";

}  // namespace

TEST(TrainCli, WritesRunDirectory) {
  const auto dir = scratch_dir("train-rundir");
  const auto r = run_duet(std::string("train ") + kShort + " --run.dir " + dir.string() + " --run.name a");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path run = dir / "a";
  EXPECT_TRUE(fs::exists(run / "config.yaml"));
  EXPECT_TRUE(fs::exists(run / "train.log"));
  const auto metrics = read_file(run / "metrics.jsonl");
  for (const char* key : {"\"step\":4", "\"loss\":", "\"lr\":", "\"grad_norm\":", "\"tokens\":",
                          "\"step_time_s\":", "\"tokens_per_s\":", "\"expert_imbalance\":", "\"val_loss\":"})
    EXPECT_NE(metrics.find(key), std::string::npos) << key;
  EXPECT_EQ(loss_texts(run / "metrics.jsonl").size(), 4u);
  // The resolved config records the overrides.
  EXPECT_NE(read_file(run / "config.yaml").find("steps: 4"), std::string::npos);
  // Progress lines name the step, loss, throughput and ETA.
  EXPECT_TRUE(std::regex_search(r.output, std::regex("step +2/4 +loss [0-9.]+ .*tok/s +eta"))) << r.output;
  fs::remove_all(dir);
}

TEST(TrainCli, SameSeedBitIdenticalLosses) {
  const auto dir = scratch_dir("train-determinism");
  const std::string base = std::string("train ") + kShort + " --run.dir " + dir.string();
  ASSERT_EQ(run_duet(base + " --run.name a").exit_code, 0);
  ASSERT_EQ(run_duet(base + " --run.name b").exit_code, 0);
  ASSERT_EQ(run_duet(base + " --run.name c --set train.seed=99").exit_code, 0);
  const auto a = loss_texts(dir / "a/metrics.jsonl"), b = loss_texts(dir / "b/metrics.jsonl"),
             c = loss_texts(dir / "c/metrics.jsonl");
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);  // the seed matters
  fs::remove_all(dir);
}

TEST(TrainCli, ConfigErrorsNameTheKey) {
  auto r = run_duet("train --set train.setps=3");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("train.setps"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("train.steps"), std::string::npos) << r.output;  // the suggestion
  r = run_duet("train --train.steps ten");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("train.steps"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ten"), std::string::npos) << r.output;
  r = run_duet("train --parallel.schedule gpipe");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("dualpipev"), std::string::npos) << r.output;  // lists allowed values
  r = run_duet("train --config /nonexistent/x.yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("/nonexistent/x.yaml"), std::string::npos) << r.output;
}

TEST(TrainCli, ACudaDeviceThatCannotBeUsedIsAConfigErrorWithTheReason) {
  if (duet::kernels::cuda_backend()) GTEST_SKIP() << "a usable CUDA device is here: the GPU checks train on it";
  const auto r = run_duet("train --runtime.device cuda --run.dir /tmp/duet-no-cuda");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("runtime.device: cuda, but " + duet::kernels::cuda_backend_absent_reason()), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("allowed: cpu, cuda"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists("/tmp/duet-no-cuda/metrics.jsonl"));
}

TEST(TrainCli, AnNcclDataPlaneWithoutTheCudaDeviceIsAConfigError) {
  const auto r = run_duet("train --runtime.data_plane nccl --run.dir /tmp/duet-nccl-on-cpu");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("runtime.data_plane: nccl carries GPU memory and needs runtime.device: cuda; allowed: mpi, nccl"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists("/tmp/duet-nccl-on-cpu/metrics.jsonl"));
}

TEST(TrainCli, HelpListsConfigKeys) {
  const auto r = run_duet("train --help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* key : {"--train.steps", "--model.moe.top_k", "--parallel.schedule", "--set"})
    EXPECT_NE(r.output.find(key), std::string::npos) << key;
}

// The README's promise: the default run takes validation loss from ~ln 256 to below 2.5.
TEST(TrainCli, DefaultRunLearns) {
  const auto dir = scratch_dir("train-default");
  const auto r = run_duet("train --run.dir " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("val loss ([0-9.]+) -> ([0-9.]+)"))) << r.output;
  const double first = std::stod(m[1]), last = std::stod(m[2]);
  EXPECT_NEAR(first, std::log(256.0), 0.3);
  EXPECT_LT(last, 2.5);
  fs::remove_all(dir);
}

// The README's main command: `duet launch` with no arguments runs the default 8-rank job
// (PP 4 DualPipe x DP 2, EP 2) and it learns like the single process does.
TEST(LaunchCli, DefaultEightRankDualPipeJob) {
  const auto dir = scratch_dir("launch-default");
  const auto r = run_duet("launch --run.dir " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("-np 8"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PP 4 x DP 2 (EP 2), dualpipe"), std::string::npos) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("val loss ([0-9.]+) -> ([0-9.]+)"))) << r.output;
  EXPECT_LT(std::stod(m[2]), 2.5);
  EXPECT_TRUE(fs::exists(dir / "tiny/metrics.jsonl"));
  fs::remove_all(dir);
}

// Ranks are pinned round-robin to cores by default (--bind core); --bind none leaves it to
// the OS, and anything else names the allowed values.
TEST(LaunchCli, BindsRanksToCores) {
  const auto bound = run_duet("launch --dry-run --parallel.pp 2 --parallel.dp 2");
  ASSERT_EQ(bound.exit_code, 0) << bound.output;
  EXPECT_NE(bound.output.find("--map-by core --bind-to core:overload-allowed"), std::string::npos)
      << bound.output;
  const auto free = run_duet("launch --dry-run --bind none --parallel.pp 2 --parallel.dp 2");
  ASSERT_EQ(free.exit_code, 0) << free.output;
  // Open MPI binds two ranks or fewer to cores unless told not to.
  EXPECT_NE(free.output.find("--bind-to none"), std::string::npos) << free.output;
  EXPECT_EQ(free.output.find("--map-by core"), std::string::npos) << free.output;
  EXPECT_EQ(free.output.find("--bind none"), std::string::npos) << "launcher option passed to the ranks";
  const auto bad = run_duet("launch --dry-run --bind socket");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("allowed values are core | none"), std::string::npos) << bad.output;
}

TEST(LaunchCli, RankCountMustMatchLayout) {
  const auto r = run_duet("launch --nproc 3 --parallel.pp 2 --parallel.dp 2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--nproc 3"), std::string::npos) << r.output;
}
