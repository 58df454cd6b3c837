#include <gtest/gtest.h>

#include "model/optimizer.h"
#include "model/tensor_spec.h"

using namespace duet::model;

TEST(Optimizer, WarmupThenCosine) {
  OptimizerConfig c;
  c.lr = 1.0, c.min_lr = 0.1, c.warmup_steps = 10, c.total_steps = 110;
  EXPECT_DOUBLE_EQ(learning_rate(c, 1), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(c, 10), 1.0);
  EXPECT_NEAR(learning_rate(c, 60), 0.55, 1e-12);  // half-way down the cosine
  EXPECT_NEAR(learning_rate(c, 110), 0.1, 1e-12);
  EXPECT_GT(learning_rate(c, 30), learning_rate(c, 31));
}

TEST(Optimizer, ClipScale) {
  EXPECT_EQ(clip_scale(0.5, 1.0), 1.0f);
  EXPECT_FLOAT_EQ(clip_scale(4.0, 1.0), 0.25f);
  EXPECT_EQ(clip_scale(100.0, 0.0), 1.0f);  // 0 = off
}

TEST(Optimizer, WeightDecaySkipsNormsAndStateIsFrozen) {
  ModelConfig m;
  m.vocab = 8, m.d_model = 4, m.layers = 2, m.heads = 1, m.dense_layers = 1, m.d_ff = 4;
  m.experts = 2, m.top_k = 1, m.d_expert = 4;
  ParamArena arena(model_tensor_specs(m));
  init_parameters(arena, m, 1);
  arena.param("layers.1.moe.bias")[0] = 0.5f;
  arena.grad("layers.1.moe.bias")[0] = 1.0f;  // must be ignored: state is not trained
  OptimizerConfig c;
  c.weight_decay = 0.5;
  AdamW opt(arena, c);
  opt.step(arena, 0.1, 1.0f);  // zero gradients elsewhere: only decay moves weights
  EXPECT_FLOAT_EQ(arena.param("layers.0.attn_norm.weight")[0], 1.0f);
  EXPECT_FLOAT_EQ(arena.param("layers.1.moe.bias")[0], 0.5f);
  ParamArena fresh(model_tensor_specs(m));
  init_parameters(fresh, m, 1);
  EXPECT_FLOAT_EQ(arena.param("head.weight")[3], fresh.param("head.weight")[3] * (1.0f - 0.1f * 0.5f));
}

TEST(TensorSpec, ActiveParamsCountTopK) {
  ModelConfig m;
  m.vocab = 10, m.d_model = 4, m.layers = 2, m.heads = 1, m.dense_layers = 1, m.d_ff = 6;
  m.experts = 3, m.top_k = 2, m.shared_experts = 1, m.d_expert = 5;
  // head 40 + final norm 4; per layer attention 4·16 + norms 8; dense FFN 3·4·6;
  // MoE: router 12 + shared 3·4·5 + 2 experts × 3·4·5.
  const int64_t expect = 40 + 4 + (64 + 8 + 72) + (64 + 8 + 12 + 60 + 120);
  EXPECT_EQ(active_params_per_token(m), expect);
  // Total counts every expert once, the embedding, and not the routing bias.
  EXPECT_EQ(total_params(m), 40 + 40 + 4 + (64 + 8 + 72) + (64 + 8 + 12 + 60 + 180));
}
