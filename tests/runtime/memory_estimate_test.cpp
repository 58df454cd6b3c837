// runtime/memory_estimate: the per-rank estimate from the config alone — its parameter count
// agrees with the tensor table, it grows with what drives it, it is cheap for absurd
// configs, and check_memory refuses naming the keys.
#include <gtest/gtest.h>

#include <chrono>

#include "io/config.h"
#include "model/tensor_spec.h"
#include "runtime/memory_estimate.h"
#include "runtime/train_setup.h"

using namespace duet;

namespace {

io::RunConfig tiny(const std::vector<std::string>& overrides = {}) {
  return io::parse_config(io::default_config_text(), overrides, "tiny.yaml");
}

}  // namespace

// Parameters: the closed form matches the spec table (one process holds the whole model).
TEST(MemoryEstimate, ParametersMatchTheTensorTable) {
  for (const auto& o : std::vector<std::vector<std::string>>{
           {}, {"model.layers=7", "model.dense_layers=2"}, {"model.moe.shared_experts=0", "model.vocab=200"}}) {
    const io::RunConfig cfg = tiny(o);
    const auto specs = model::model_tensor_specs(runtime::to_model_config(cfg));
    int64_t n = 0;
    for (const auto& s : specs) n += s.numel() + 16;  // with the arena's alignment, at most
    const auto e = runtime::estimate_rank_memory(cfg, 0);
    EXPECT_EQ(e.parameters, 4 * n);
    EXPECT_EQ(e.gradients, e.parameters);
  }
}

TEST(MemoryEstimate, GrowsWithWhatDrivesIt) {
  const auto base = runtime::largest_rank_memory(tiny());
  EXPECT_EQ(base.microbatches, 16);  // every micro-batch keeps its activations
  const auto longer = runtime::largest_rank_memory(tiny({"train.seq_len=256"}));
  EXPECT_GT(longer.activation_per_microbatch, 2 * base.activation_per_microbatch);  // T² attention
  const auto more = runtime::largest_rank_memory(tiny({"train.global_batch=32"}));
  EXPECT_EQ(more.activations, 2 * base.activations);
  // Two pipeline stages split the layers and the micro-batches' activations.
  const auto split = runtime::largest_rank_memory(tiny({"parallel.pp=2", "parallel.schedule=1f1b"}));
  EXPECT_LT(split.parameters, base.parameters);
}

// On the GPU attention keeps each row's log-sum-exp, not the T×T softmax the CPU keeps.
TEST(MemoryEstimate, AttentionOnTheGpuKeepsARowNotARowOfScores) {
  const std::vector<std::string> o = {"train.seq_len=256"};
  const io::RunConfig cpu = tiny(o);
  std::vector<std::string> on_gpu = o;
  on_gpu.push_back("runtime.device=cuda");
  const io::RunConfig gpu = tiny(on_gpu);
  const auto a = runtime::estimate_rank_memory(cpu, 0), b = runtime::estimate_rank_memory(gpu, 0);
  const int64_t B = cpu.train.micro_batch_size, T = 256, H = cpu.model.heads, layers = cpu.model.layers;
  EXPECT_EQ(a.activation_per_microbatch - b.activation_per_microbatch, 4 * layers * B * H * (T * T - T));
  EXPECT_EQ(a.parameters, b.parameters);
}

TEST(MemoryEstimate, AbsurdConfigsAreEstimatedQuicklyAndRefused) {
  const auto t0 = std::chrono::steady_clock::now();
  const io::RunConfig cfg = tiny({"model.layers=1000000"});
  const auto e = runtime::largest_rank_memory(cfg);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  EXPECT_GT(e.total(), int64_t(1) << 40);
  try {
    runtime::check_memory(cfg, 1);
    FAIL() << "a million layers fit";
  } catch (const io::ConfigError& err) {
    const std::string what = err.what();
    EXPECT_NE(what.find("does not fit in memory"), std::string::npos) << what;
    EXPECT_NE(what.find("model.layers"), std::string::npos) << what;
  }
}

TEST(MemoryEstimate, MemoryLimitIsTheBudget) {
  const auto e = runtime::largest_rank_memory(tiny());
  const auto limit = [&](uint64_t bytes) { return "runtime.memory_limit=" + std::to_string(bytes); };
  EXPECT_NO_THROW(runtime::check_memory(tiny({limit(e.total() + 1)}), 1));
  EXPECT_THROW(runtime::check_memory(tiny({limit(e.total() - 1)}), 1), io::ConfigError);
  // Ranks on one machine share it.
  EXPECT_THROW(runtime::check_memory(tiny({limit(e.total() + 1)}), 2), io::ConfigError);
  try {
    runtime::check_memory(tiny({limit(1 << 20), "train.global_batch=64"}), 1);
  } catch (const io::ConfigError& err) {
    EXPECT_NE(std::string(err.what()).find("runtime.memory_limit"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("train.global_batch"), std::string::npos) << err.what();
  }
}
