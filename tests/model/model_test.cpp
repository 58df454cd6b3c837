// Whole-model checks: gradients against finite differences, the backward split into
// input and weight parts, stage splits, determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/arena.h"
#include "model/stage.h"

using namespace duet::model;

namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab = 16, c.d_model = 8, c.layers = 3, c.heads = 2, c.dense_layers = 1, c.d_ff = 12;
  c.experts = 4, c.top_k = 2, c.shared_experts = 1, c.d_expert = 6;
  return c;
}

struct Batch {
  int B = 2, T = 5;
  std::vector<int32_t> tokens, targets;
};

Batch make_batch(const ModelConfig& c, unsigned seed) {
  Batch b;
  std::mt19937 rng(seed);
  for (int i = 0; i < b.B * b.T; ++i) b.tokens.push_back(rng() % c.vocab), b.targets.push_back(rng() % c.vocab);
  return b;
}

double loss_of(Stage& s, const Batch& b, bool training = false) {
  StageActivations a;
  s.forward(a, {b.B, b.T, b.tokens.data(), b.targets.data(), training}, nullptr);
  return s.loss_sum(a) / (b.B * b.T);
}

// Make the weights larger than the default init so that gradients are well above float noise.
void spread(ParamArena& arena, const ModelConfig& c) {
  init_parameters(arena, c, 7);
  for (const auto& s : arena.specs())
    if (s.role == TensorRole::Weight)
      for (int64_t i = 0; i < s.numel(); ++i) arena.param(s.name)[i] *= 10.0f;
}

}  // namespace

TEST(Model, GradientMatchesFiniteDifferences) {
  const auto cfg = tiny_config();
  ParamArena arena(model_tensor_specs(cfg));
  spread(arena, cfg);
  Stage stage(cfg, StageRange::whole_model(cfg), arena);
  const Batch b = make_batch(cfg, 1);
  StageActivations a;
  stage.forward(a, {b.B, b.T, b.tokens.data(), b.targets.data(), false}, nullptr);
  stage.backward(a, nullptr, 1.0f / (b.B * b.T));

  // Central differences of the float model on a sample of every trainable tensor.
  const float h = 1e-2f;
  int checked = 0;
  for (const auto& spec : arena.specs()) {
    if (!spec.trainable()) continue;
    std::vector<float> analytic;
    std::vector<double> numeric;
    for (int64_t i = 0; i < spec.numel(); i += std::max<int64_t>(1, spec.numel() / 12)) {
      float* p = arena.param(spec.name) + i;
      const float keep = *p;
      *p = keep + h;
      const double lp = loss_of(stage, b);
      *p = keep - h;
      const double lm = loss_of(stage, b);
      *p = keep;
      analytic.push_back(arena.grad(spec.name)[i]);
      numeric.push_back((lp - lm) / (2 * h));
    }
    double num = 0, den = 0;
    for (size_t i = 0; i < numeric.size(); ++i)
      num += std::pow(analytic[i] - numeric[i], 2), den += numeric[i] * numeric[i];
    const double err = std::sqrt(num / std::max(den, 1e-30));
    EXPECT_LT(err, 2e-2) << spec.name;
    ++checked;
  }
  EXPECT_GE(checked, 15);
}

// Two whole-model stages with identical parameters, to run one way and another and compare
// their gradients bit for bit.
struct TwinModels {
  TwinModels(const ModelConfig& cfg, uint64_t seed)
      : one(model_tensor_specs(cfg)), two(model_tensor_specs(cfg)), s1(cfg, StageRange::whole_model(cfg), one),
        s2(cfg, StageRange::whole_model(cfg), two) {
    init_parameters(one, cfg, seed);  // stages read their parameters when they compute
    init_parameters(two, cfg, seed);
  }
  void expect_same_grads() const {
    for (size_t i = 0; i < one.grads().size(); ++i) ASSERT_EQ(one.grads()[i], two.grads()[i]) << i;
  }
  ParamArena one, two;
  Stage s1, s2;
};

TEST(Model, InputThenWeightEqualsFullBackward) {
  const auto cfg = tiny_config();
  const Batch b = make_batch(cfg, 2);
  TwinModels m(cfg, 3);
  Stage &s1 = m.s1, &s2 = m.s2;
  StageActivations a1, a2, a3;
  const MicroBatch mb{b.B, b.T, b.tokens.data(), b.targets.data(), true};
  s1.forward(a1, mb, nullptr);
  s1.backward(a1, nullptr, 0.1f);
  // Split: two micro-batches' input passes first, weight passes later in FIFO order —
  // how ZB1P/DualPipe run them — must give the same sum as two full backwards.
  s2.forward(a2, mb, nullptr);
  s2.forward(a3, mb, nullptr);
  s2.backward_input(a2, nullptr, 0.1f);
  s2.backward_input(a3, nullptr, 0.1f);
  s2.backward_weight(a2);
  s2.backward_weight(a3);
  s1.forward(a1, mb, nullptr);
  s1.backward(a1, nullptr, 0.1f);
  m.expect_same_grads();
  EXPECT_THROW(s2.backward_weight(a2), std::logic_error);  // no pending weight pass
}

// The weight pass in parts (how the engine fills communication waits): parts of two
// micro-batches interleaved, with a forward of a third micro-batch in between, equal the
// whole weight passes run in FIFO order, bit for bit.
TEST(Model, WeightPartsEqualWholeWeightPass) {
  const auto cfg = tiny_config();
  const Batch b = make_batch(cfg, 2);
  TwinModels m(cfg, 5);
  Stage &s1 = m.s1, &s2 = m.s2;  // whole weight passes, and weight passes in parts
  const MicroBatch mb{b.B, b.T, b.tokens.data(), b.targets.data(), true};
  StageActivations w1, w2, p1, p2, p3;
  for (auto* a : {&w1, &w2}) s1.forward(*a, mb, nullptr), s1.backward_input(*a, nullptr, 0.1f);
  s1.backward_weight(w1);
  s1.backward_weight(w2);
  for (auto* a : {&p1, &p2}) s2.forward(*a, mb, nullptr), s2.backward_input(*a, nullptr, 0.1f);
  const int n = s2.weight_parts();
  ASSERT_EQ(n, cfg.layers + 2);
  s2.backward_weight_part(p1, 0);
  s2.backward_weight_part(p1, 1);
  s2.forward(p3, mb, nullptr);  // another micro-batch computes between parts
  for (int part = 2; part < n; ++part) s2.backward_weight_part(p1, part);
  for (int part = 0; part < n; ++part) {
    EXPECT_TRUE(p2.awaiting_weight);
    s2.backward_weight_part(p2, part);
  }
  EXPECT_FALSE(p2.awaiting_weight);
  m.expect_same_grads();
  EXPECT_THROW(s2.backward_weight_part(p2, 0), std::logic_error);
}

TEST(Model, TwoStagesEqualOneStage) {
  const auto cfg = tiny_config();
  const Batch b = make_batch(cfg, 4);
  ParamArena whole(model_tensor_specs(cfg));
  init_parameters(whole, cfg, 5);
  Stage s(cfg, StageRange::whole_model(cfg), whole);
  StageActivations a;
  const MicroBatch mb{b.B, b.T, b.tokens.data(), b.targets.data(), true};
  s.forward(a, mb, nullptr);
  s.backward(a, nullptr, 0.1f);

  const auto ranges = split_layers(cfg, 2);
  ParamArena p0(stage_tensor_specs(cfg, ranges[0])), p1(stage_tensor_specs(cfg, ranges[1]));
  init_parameters(p0, cfg, 5);
  init_parameters(p1, cfg, 5);
  Stage s0(cfg, ranges[0], p0), s1(cfg, ranges[1], p1);
  StageActivations a0, a1;
  s0.forward(a0, mb, nullptr);
  s1.forward(a1, mb, s0.output(a0));
  EXPECT_EQ(s1.loss_sum(a1), s.loss_sum(a));
  s1.backward(a1, nullptr, 0.1f);
  s0.backward(a0, s1.input_grad(a1), 0.1f);
  for (ParamArena* part : {&p0, &p1})
    for (const auto& spec : part->specs())
      for (int64_t i = 0; i < spec.numel(); ++i)
        ASSERT_EQ(part->grad(spec.name)[i], whole.grad(spec.name)[i]) << spec.name;
}

TEST(Model, InitIsKeyedByNameNotLayout) {
  const auto cfg = tiny_config();
  ParamArena whole(model_tensor_specs(cfg));
  init_parameters(whole, cfg, 11);
  const auto r = split_layers(cfg, 3)[2];
  ParamArena last(stage_tensor_specs(cfg, r));
  init_parameters(last, cfg, 11);
  for (const auto& spec : last.specs())
    for (int64_t i = 0; i < spec.numel(); ++i)
      ASSERT_EQ(last.param(spec.name)[i], whole.param(spec.name)[i]);
  ParamArena other(model_tensor_specs(cfg));
  init_parameters(other, cfg, 12);
  EXPECT_NE(other.param("head.weight")[0], whole.param("head.weight")[0]);
}

// Tensors of millions of elements are filled by several threads: every element still is
// init_value's, whatever thread made it (a 4 Mi-element embedding: up to 4 chunks).
TEST(Model, ThreadedInitGivesEveryElementItsKeyedValue) {
  auto cfg = tiny_config();
  cfg.vocab = 16384, cfg.d_model = 256, cfg.heads = 4;
  ParamArena arena(model_tensor_specs(cfg));
  init_parameters(arena, cfg, 5);
  const TensorSpec& embed = arena.spec("embed.weight");
  ASSERT_GE(embed.numel(), 4 << 20);
  const float* p = arena.param("embed.weight");
  for (int64_t i = 0; i < embed.numel(); ++i) ASSERT_EQ(p[i], init_value(embed, cfg, 5, i)) << i;
  EXPECT_EQ(arena.param("final_norm.weight")[0], 1.0f);
}

TEST(Model, SplitLayersCoversModel) {
  auto cfg = tiny_config();
  cfg.layers = 7;
  const auto r = split_layers(cfg, 3);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].first_layer, 0);
  EXPECT_EQ(r[0].end_layer, 3);
  EXPECT_EQ(r[1].end_layer, 5);
  EXPECT_EQ(r[2].end_layer, 7);
  EXPECT_TRUE(r[0].embedding && !r[0].head && r[2].head && !r[1].embedding);
}

TEST(Model, ExpertBiasFollowsLoad) {
  const auto cfg = tiny_config();
  ParamArena arena(model_tensor_specs(cfg));
  init_parameters(arena, cfg, 1);
  Stage s(cfg, StageRange::whole_model(cfg), arena);
  const Batch b = make_batch(cfg, 9);
  loss_of(s, b, /*training=*/true);
  auto load = s.expert_load();
  int64_t total = 0;
  for (auto v : load) total += v;
  EXPECT_EQ(total, (int64_t)b.B * b.T * cfg.top_k * (cfg.layers - cfg.dense_layers));
  std::vector<int64_t> skew(load.size(), 0);
  skew[0] = 10;  // expert 0 of the first MoE layer overloaded
  s.update_expert_bias(skew, 0.5f);
  const float* bias = arena.param("layers.1.moe.bias");
  EXPECT_FLOAT_EQ(bias[0], -0.5f);
  EXPECT_FLOAT_EQ(bias[1], 0.5f);
}
