// The cost model: FLOPs and bytes against hand calculations, routing expectations, stage
// balancing, and the invariants of a simulated DeepSeek-V3 step (breakdown sums to the step,
// units agree, memory fits).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>

#include "scheduler/cost_model.h"

namespace duet::sched {
namespace {

// d = 64, 4 heads, dense FFN 128, vocab 100, 2 dense layers, sequences of 8 tokens, BF16.
ModelShape small_dense() {
  ModelShape m;
  m.vocab = 100, m.d_model = 64, m.layers = 2, m.heads = 4, m.dense_layers = 2, m.d_ff = 128;
  m.experts = 4, m.top_k = 2, m.shared_experts = 1, m.d_expert = 32;
  m.precision = GemmPrecision::BF16;
  return m;
}

Layout small_layout() {
  Layout l;
  l.schedule = ScheduleKind::OneFOneB;
  l.pp = 1, l.dp = 1, l.ep = 1, l.seq_len = 8, l.micro_batch_size = 1, l.global_batch = 4;
  return l;
}

ModelShape deepseek_v3() {
  ModelShape m;
  m.vocab = 129280, m.d_model = 7168, m.layers = 61, m.heads = 128, m.dense_layers = 3, m.d_ff = 18432;
  m.mla = true, m.q_lora_rank = 1536, m.kv_lora_rank = 512, m.qk_nope_head_dim = 128, m.qk_rope_head_dim = 64;
  m.v_head_dim = 128, m.experts = 256, m.top_k = 8, m.shared_experts = 1, m.d_expert = 2048;
  m.expert_groups = 8, m.group_limit = 4, m.mtp_depth = 1, m.precision = GemmPrecision::FP8;
  return m;
}

Layout deepseek_layout() {
  Layout l;
  l.schedule = ScheduleKind::DualPipe;
  l.pp = 16, l.dp = 128, l.ep = 64, l.seq_len = 4096, l.micro_batch_size = 1, l.global_batch = 15360;
  return l;
}

ClusterSpec h800(int gpus) {
  ClusterSpec c;
  c.gpus = gpus;
  return c;
}

TEST(CostModelFlops, DenseMhaLayerByHand) {
  const auto pieces = model_pieces(small_dense(), small_layout(), h800(1));
  ASSERT_EQ(pieces.size(), 4u);  // embedding, 2 layers, head
  const Piece& layer = pieces[1];
  EXPECT_EQ(layer.kind, PieceKind::DenseLayer);
  // Q, K, V, O: 2 x 4 d^2 = 32768; SwiGLU: 2 x 3 d f = 49152.
  EXPECT_DOUBLE_EQ(layer.flops.gemm, 32768 + 49152);
  // Causal core: QK^T and PV, 2 x heads x (2 x head dim) per visible pair, (8 + 1) / 2 pairs per token.
  EXPECT_DOUBLE_EQ(layer.flops.attention, 2 * 4 * (2 * 16) * 4.5);
  EXPECT_DOUBLE_EQ(layer.flops.recompute, 0);
  EXPECT_DOUBLE_EQ(pieces[3].flops.gemm_bf16, 2 * 64 * 100);  // head
  EXPECT_DOUBLE_EQ(pieces[0].flops.model_forward(), 0);         // embedding: a gather
  // Parameters: attention 4d^2 + norm, FFN 3 d f + norm.
  EXPECT_DOUBLE_EQ(layer.dense_params, 4 * 64 * 64 + 64 + 3 * 64 * 128 + 64);
}

TEST(CostModelFlops, ModelFlopsPerTokenIsThreeForwards) {
  const JobCost job = build_job_cost(small_dense(), h800(1), Efficiencies{}, small_layout());
  const double forward = 2 * (32768 + 49152 + 2 * 4 * 32 * 4.5) + 2 * 64 * 100;
  EXPECT_DOUBLE_EQ(job.model_flops_per_token, 3 * forward);
  // MHA: no GEMM recomputed; the attention backward recomputes the scores (half a forward).
  EXPECT_DOUBLE_EQ(job.hardware_flops_per_token, 3 * forward + 0.5 * 2 * (2 * 4 * 32 * 4.5));  // two layers
}

TEST(CostModelFlops, DeepSeekV3MoeLayerByHand) {
  const auto pieces = model_pieces(deepseek_v3(), deepseek_layout(), h800(2048));
  ASSERT_EQ(pieces.size(), 1u + 61 + 1 + 1);  // embedding, layers, MTP, head
  const Piece& moe = pieces[1 + 10];
  ASSERT_EQ(moe.kind, PieceKind::MoeLayer);
  // MLA projections: W_DQ 7168x1536, W_UQ 1536x(128x192), W_DKV+KR 7168x576, W_UKV 512x(128x256),
  // W_O (128x128)x7168 = 187,105,280 weights; experts: (8 routed + 1 shared) x 3 x 7168 x 2048.
  EXPECT_DOUBLE_EQ(moe.flops.gemm, 2.0 * 187105280 + 2.0 * 9 * 3 * 7168 * 2048);
  EXPECT_DOUBLE_EQ(moe.flops.gemm_bf16, 2.0 * 7168 * 256);                   // router
  EXPECT_DOUBLE_EQ(moe.flops.attention, 2.0 * 128 * (192 + 128) * 2048.5);  // causal, s = 4096
  EXPECT_DOUBLE_EQ(moe.flops.recompute, 2.0 * (1536.0 * 128 * 192 + 512.0 * 128 * 256));
  EXPECT_DOUBLE_EQ(moe.expert_params, 256.0 * 3 * 7168 * 2048);
  EXPECT_EQ(moe.moe_layers, 1);
  // The published totals: 671B parameters without the MTP module, ~37B activated per token.
  double total = 0, activated = 0;
  for (const Piece& p : pieces) {
    if (p.kind == PieceKind::Mtp) continue;
    total += p.dense_params + p.expert_params;
    activated += p.dense_params + p.expert_params * (p.moe_layers ? 8.0 / 256 : 0);
  }
  EXPECT_NEAR(total / 1e9, 671, 1.5);
  EXPECT_NEAR(activated / 1e9, 37.5, 0.6);
}

TEST(CostModelBytes, NodeLimitedRoutingOfDeepSeekV3) {
  // 64-way EP over 8 nodes of 8 GPUs, 8 groups (one per node), at most 4 per token.
  const Routing r = expected_routing(deepseek_v3(), 64, 8);
  EXPECT_DOUBLE_EQ(r.nodes_reached, 4);    // 8 x (1 - C(7,4)/C(8,4))
  EXPECT_DOUBLE_EQ(r.ib_copies, 3.5);      // the own node is one of the 4 half the time
  EXPECT_DOUBLE_EQ(r.nvlink_copies, 4 * (8 * (1 - 0.875 * 0.875)) * 0.875);
  // Inside one node nothing crosses IB.
  EXPECT_DOUBLE_EQ(expected_routing(deepseek_v3(), 8, 8).ib_copies, 0);
  // Without a group limit, 2 experts over 2 nodes reach 1.5 nodes on average.
  ModelShape m = deepseek_v3();
  m.top_k = 2, m.group_limit = m.expert_groups;
  EXPECT_DOUBLE_EQ(expected_routing(m, 16, 8).nodes_reached, 1.5);
}

TEST(CostModelBytes, AllToAllAndPipelineMessages) {
  const auto pieces = model_pieces(deepseek_v3(), deepseek_layout(), h800(2048));
  const Piece& moe = pieces[1 + 10];
  const double fp8 = 7168 * (1 + 4.0 / 128), bf16 = 7168 * 2;  // FP8 with one FP32 scale per 128
  EXPECT_DOUBLE_EQ(moe.bytes.a2a_ib_f, 3.5 * (fp8 + bf16));       // dispatch FP8 + combine BF16
  EXPECT_DOUBLE_EQ(moe.bytes.a2a_ib_b, 3.5 * 2 * bf16);           // both gradients in BF16
  EXPECT_DOUBLE_EQ(pieces[1].bytes.a2a_ib_f, 0);                  // dense layer: no all-to-all

  const JobCost job = build_job_cost(deepseek_v3(), h800(2048), Efficiencies{}, deepseek_layout());
  for (const StageCost& s : job.sim.stages) {
    EXPECT_DOUBLE_EQ(s.activation_bytes, 4096.0 * 7168 * 2);  // one micro-batch's hidden state, BF16
    EXPECT_DOUBLE_EQ(s.gradient_bytes, s.activation_bytes);
  }
}

TEST(CostModelBytes, StaticMemoryOfASingleGpuByHand) {
  const ModelShape m = small_dense();
  const JobCost job = build_job_cost(m, h800(1), Efficiencies{}, small_layout());
  const double params = 2 * (4 * 64 * 64 + 64 + 3 * 64 * 128 + 64) + 100 * 64 + 100 * 64 + 64;
  ASSERT_EQ(job.static_memory.size(), 1u);
  EXPECT_DOUBLE_EQ(job.static_memory[0].weights, 2 * params);    // BF16
  EXPECT_DOUBLE_EQ(job.static_memory[0].gradients, 4 * params);  // FP32
  EXPECT_DOUBLE_EQ(job.static_memory[0].optimizer, 8 * params);  // FP32 master + 2 BF16 moments, 1 replica
}

TEST(CostModelTime, EfficiencyScalesOnlyItsPart) {
  const ModelShape m = small_dense();
  Efficiencies e;
  const JobCost a = build_job_cost(m, h800(1), e, small_layout());
  e.gemm /= 2;
  const JobCost b = build_job_cost(m, h800(1), e, small_layout());
  EXPECT_DOUBLE_EQ(b.stages[0].f.gemm, 2 * a.stages[0].f.gemm);
  EXPECT_DOUBLE_EQ(b.stages[0].f.attention, a.stages[0].f.attention);
  EXPECT_DOUBLE_EQ(b.stages[0].w.gemm, a.stages[0].w.gemm);  // weight gradients have their own
}

TEST(CostModelStages, BalanceStagesByHand) {
  EXPECT_EQ(balance_stages({1, 1, 1, 1}, 2, 0, 0), (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(balance_stages({1, 1, 1, 1}, 2, 0, 2), (std::vector<int>{0, 3, 4}));  // the head is on the last
  EXPECT_EQ(balance_stages({5, 1, 1, 1, 1, 1}, 2, 0, 0), (std::vector<int>{0, 1, 6}));
}

TEST(CostModelErrors, LayoutMustCoverTheCluster) {
  try {
    build_job_cost(deepseek_v3(), h800(1024), Efficiencies{}, deepseek_layout());
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("must equal cluster.gpus (1024)"), std::string::npos) << e.what();
  }
  Layout l = small_layout();
  l.pp = 2, l.dp = 1;
  ModelShape m = small_dense();
  m.layers = 1, m.dense_layers = 1;
  EXPECT_THROW(build_job_cost(m, h800(2), Efficiencies{}, l), std::invalid_argument);  // 1 layer, 2 stages
}

TEST(CostModelStep, DeepSeekV3StepIsConsistent) {
  const Layout l = deepseek_layout();
  const ClusterSpec c = h800(2048);
  const JobCost job = build_job_cost(deepseek_v3(), c, Efficiencies{}, l);
  ASSERT_EQ(job.stages.size(), 16u);
  EXPECT_EQ(job.stages.front().first_layer, 0);
  EXPECT_EQ(job.stages.back().end_layer, 61);
  for (size_t s = 1; s < job.stages.size(); ++s) EXPECT_EQ(job.stages[s].first_layer, job.stages[s - 1].end_layer);
  EXPECT_TRUE(job.stages.back().head);
  EXPECT_EQ(job.stages.back().mtp_modules, 1);

  const Schedule s = make_schedule(l.schedule, l.pp, l.microbatches());
  const SimResult r = simulate(s, job.sim);
  ASSERT_EQ(r.rank_stats.size(), 2048u);  // every rank of every pipeline
  const StepSummary sum = summarize_step(job, s, r, c, l);
  const double parts = sum.gemm_s + sum.attention_s + sum.memory_bound_s + sum.exposed_a2a_s + sum.exposed_p2p_s +
                       sum.dp_tail_s + sum.bubble_s;
  EXPECT_NEAR(parts, sum.step_time_s, 1e-9 * sum.step_time_s);
  EXPECT_DOUBLE_EQ(sum.tokens_per_step, 15360.0 * 4096);
  EXPECT_NEAR(sum.gpu_hours_per_trillion_tokens * 3600 * sum.tokens_per_s_per_gpu, 1e12, 1);
  EXPECT_NEAR(sum.mfu * 989e12, job.model_flops_per_token * sum.tokens_per_s_per_gpu, 1e3);
  EXPECT_LT(sum.memory.total(), 80.0 * (1ull << 30));  // the published layout fits an H800
  EXPECT_GT(sum.memory.activations, 0);
  // Per rank the step is at least its compute; DualPipe's overlap keeps the all-to-all mostly hidden.
  EXPECT_GT(sum.step_time_s, sum.gemm_s + sum.attention_s + sum.memory_bound_s);
  EXPECT_LT(sum.exposed_a2a_s, 0.2 * sum.step_time_s);
}

TEST(CostModelStep, OverlapMakesDualPipeFasterThan1F1B) {
  Layout l = deepseek_layout();
  l.dp = 8, l.ep = 8, l.global_batch = 8 * 40;  // a smaller job: 40 micro-batches per pipeline
  auto step = [&](ScheduleKind k) {
    l.schedule = k;
    const JobCost job = build_job_cost(deepseek_v3(), h800(16 * 8), Efficiencies{}, l);
    const Schedule s = make_schedule(k, l.pp, l.microbatches());
    return simulate(s, job.sim).makespan;
  };
  EXPECT_LT(step(ScheduleKind::DualPipe), step(ScheduleKind::OneFOneB));
}

}  // namespace
}  // namespace duet::sched
