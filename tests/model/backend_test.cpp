// The model on a kernel backend: the arena's memory comes from the backend's allocator, and
// Stage and AdamW refuse a backend that lacks an op they call (rather than crash on nullptr).
#include <gtest/gtest.h>

#include <cstdint>

#include "kernels/backend.h"
#include "model/arena.h"
#include "model/optimizer.h"
#include "model/stage.h"

using namespace duet::model;
using duet::kernels::Backend;

namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.vocab = 16, c.d_model = 8, c.layers = 2, c.heads = 2, c.dense_layers = 1, c.d_ff = 12;
  c.experts = 4, c.top_k = 2, c.shared_experts = 1, c.d_expert = 6;
  return c;
}

int live_allocations = 0;

// The CPU backend with an allocator that counts what is outstanding.
Backend counting_backend() {
  Backend b = duet::kernels::cpu_backend();
  b.alloc = [](size_t bytes) {
    ++live_allocations;
    return duet::kernels::cpu_backend().alloc(bytes);
  };
  b.free = [](void* p) {
    if (p) --live_allocations;
    duet::kernels::cpu_backend().free(p);
  };
  return b;
}

}  // namespace

TEST(Arena, AllocatesThroughItsBackend) {
  const Backend counting = counting_backend();
  const auto cfg = small_config();
  {
    ParamArena arena(model_tensor_specs(cfg), counting);
    EXPECT_EQ(&arena.backend(), &counting);
    EXPECT_EQ(live_allocations, 2);  // parameters and gradients
    for (float g : arena.grads()) ASSERT_EQ(g, 0.0f);
    init_parameters(arena, cfg, 1);
    Stage stage(cfg, StageRange::whole_model(cfg), arena);
    AdamW opt(arena, OptimizerConfig{});
  }
  EXPECT_EQ(live_allocations, 0);
  EXPECT_EQ(&ParamArena(model_tensor_specs(cfg)).backend(), &duet::kernels::cpu_backend());
}

TEST(Arena, ParameterStorageIsAligned) {
  ParamArena arena(model_tensor_specs(small_config()));
  for (const auto& spec : arena.specs())
    EXPECT_EQ(reinterpret_cast<uintptr_t>(arena.param(spec.name)) % 64, 0u) << spec.name;
}

TEST(Stage, RefusesABackendThatLacksAnOp) {
  Backend partial = duet::kernels::cpu_backend();
  partial.attention_backward = nullptr;
  const auto cfg = small_config();
  ParamArena arena(model_tensor_specs(cfg), partial);
  EXPECT_THROW(Stage(cfg, StageRange::whole_model(cfg), arena), std::logic_error);
  EXPECT_THROW(AdamW(arena, OptimizerConfig{}), std::logic_error);
}
