#pragma once
// The cost model: from a model shape, a cluster and a parallel layout to the per-stage costs
// the simulator times (StageCost), plus what a report needs around them (FLOPs per token,
// memory per GPU). Plain structs in, plain structs out: the app maps its RunConfig onto them.
//
// Units: seconds, bytes, FLOPs. Every efficiency is a fraction of a peak, and every default
// is a measurement cited in docs/cost-model.md; none is fitted to a published step time.
//
// What one chunk (one stage's share of one micro-batch) costs:
//   time   = Σ GEMM FLOPs / (peak of its precision × compute SMs / SMs × efficiency)
//          + attention-core FLOPs / (BF16 peak × compute share × attention efficiency)
//          + memory-bound bytes / (HBM bandwidth × HBM efficiency)
//   split into F (forward), I (backward for the input) and W (backward for the weights);
//   B = I + W and an F&B pair computes F + B, its all-to-all hidden by the simulator.
//   all-to-all = per MoE layer, max(IB bytes / IB bandwidth, NVLink bytes / NVLink bandwidth):
//   DeepEP-style dispatch crosses IB once per remote node and fans out over NVLink.
#include <string>
#include <vector>

#include "scheduler/simulate.h"

namespace duet::sched {

enum class GemmPrecision { FP32, BF16, FP8 };

struct ModelShape {
  int vocab = 256, d_model = 128, layers = 4, heads = 4;
  int dense_layers = 1, d_ff = 384;  // the first dense_layers use a dense SwiGLU FFN
  // Attention: multi-head latent (MLA) when `mla`, else plain multi-head with head size
  // d_model / heads.
  bool mla = false;
  int q_lora_rank = 0, kv_lora_rank = 0, qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  int experts = 8, top_k = 2, shared_experts = 1, d_expert = 128;
  int expert_groups = 1, group_limit = 1;  // group-limited routing (DeepSeek-V3: 8 groups, 4)
  int mtp_depth = 0;
  GemmPrecision precision = GemmPrecision::BF16;
};

struct ClusterSpec {
  int gpus = 1, gpus_per_node = 8;
  double bf16_tflops = 989, fp8_tflops = 1979;
  double hbm_gib = 80, hbm_tbps = 3.35;
  int sms = 132, comm_sms = 20;
  double nvlink_gbps = 160, ib_gbps = 40;
  double nvlink_latency_us = 3, ib_latency_us = 5;
};

// Achieved fractions of peak, measured on H800 in DeepSeek's published training trace
// (deepseek-ai/profile-data train.json; derivation in docs/cost-model.md).
struct Efficiencies {
  double gemm = 0.57;      // forward and input-gradient GEMMs (and recomputation)
  double wgrad = 0.35;     // weight-gradient GEMMs
  double attention_fwd = 0.66;
  double attention_bwd = 0.48;
  double hbm = 0.5;        // memory-bound kernels
};

struct Layout {
  ScheduleKind schedule = ScheduleKind::DualPipe;
  int pp = 1, dp = 1, ep = 1;  // world = pp × dp; ep divides dp
  int seq_len = 128, micro_batch_size = 1, global_batch = 16;
  int microbatches() const { return global_batch / (dp * micro_batch_size); }
};

// FLOPs of one model piece for one token, by the unit that runs them.
struct PieceFlops {
  double gemm = 0;       // linear layers in model precision (forward; dgrad and wgrad repeat it)
  double gemm_bf16 = 0;  // linear layers kept in BF16 (output head, router): forward
  double attention = 0;  // attention core forward (causal); backward is 2.5x
  double recompute = 0;  // GEMMs re-run in the backward (MLA up-projections)
  double model_forward() const { return gemm + gemm_bf16 + attention; }
};

// Bytes of one model piece for one token.
struct PieceBytes {
  double mem_f = 0, mem_i = 0, mem_w = 0;  // HBM traffic of memory-bound kernels in F, I, W
  double activation = 0;    // held from F to B/I
  double weight_grad = 0;   // held from I to W
  double a2a_ib_f = 0, a2a_nvl_f = 0, a2a_ib_b = 0, a2a_nvl_b = 0;  // all-to-all sent, F and B
};

enum class PieceKind { Embedding, DenseLayer, MoeLayer, Mtp, Head };

// One piece of the model as the partitioner places it on stages: the embedding, a layer, one
// MTP module (projection + MoE layer + its pass through the shared head), the output head.
struct Piece {
  PieceKind kind;
  PieceFlops flops;
  PieceBytes bytes;
  double dense_params = 0;   // replicated over data-parallel ranks
  double expert_params = 0;  // routed experts of the whole layer (sharded over EP)
  int moe_layers = 0;        // all-to-all rounds per chunk
};

// Per-token FLOPs and bytes of each piece, exposed for tests and the docs.
std::vector<Piece> model_pieces(const ModelShape& m, const Layout& layout, const ClusterSpec& c);

// Expected nodes a token's routed experts reach (group-limited routing, balanced load), and
// how many of its copies cross IB and NVLink in one dispatch.
struct Routing {
  double nodes_reached = 0;  // distinct nodes of the EP group holding one of its experts
  double ib_copies = 0;      // copies sent over InfiniBand (one per remote node reached)
  double nvlink_copies = 0;  // copies forwarded over NVLink inside nodes
};
Routing expected_routing(const ModelShape& m, int ep, int gpus_per_node);

// Splits layers with these costs into `stages` contiguous runs minimising the largest run,
// `first_extra` counted on stage 0 and `last_extra` on the last stage (embedding; head and
// MTP). Returns stages + 1 boundaries: stage s holds layers [b[s], b[s+1]). Needs
// layers >= stages.
std::vector<int> balance_stages(const std::vector<double>& layer_cost, int stages, double first_extra,
                                double last_extra);

// Time split of one chunk by what runs it, for reports.
struct TimeSplit {
  double gemm = 0, attention = 0, memory = 0;
  double total() const { return gemm + attention + memory; }
};

struct StagePlan {
  int first_layer = 0, end_layer = 0;  // transformer layers [first, end)
  bool embedding = false, head = false;
  int mtp_modules = 0;
  int moe_layers = 0;
  TimeSplit f, i, w;       // compute of one chunk
  double dense_params = 0, expert_params_local = 0;  // on one GPU holding this stage
  double dp_group = 1, expert_replicas = 1;          // ranks that share (and shard) its gradients
  double grad_sync_s = 0, optimizer_s = 0;           // part of StageCost::dp_sync
  StageCost cost;
};

struct MemoryPerGpu {  // bytes, on the worst rank
  double weights = 0, gradients = 0, optimizer = 0, activations = 0;
  double total() const { return weights + gradients + optimizer + activations; }
};

struct JobCost {
  SimConfig sim;                  // ready for simulate(); pipelines = dp
  std::vector<StagePlan> stages;  // Placement::num_stages() entries
  double tokens_per_microbatch = 0;
  double model_flops_per_token = 0;     // 3 × forward, causal attention, no recomputation
  double hardware_flops_per_token = 0;  // plus recomputation (MLA up-projections, attention scores)
  Routing routing;
  // Static memory (weights, gradients, optimizer) per pipeline rank, for the ranks' stages.
  std::vector<MemoryPerGpu> static_memory;
};

// Throws std::invalid_argument naming the broken rule (e.g. pp × dp != gpus).
JobCost build_job_cost(const ModelShape& m, const ClusterSpec& c, const Efficiencies& e, const Layout& layout);

// The headline numbers of one simulated step.
struct StepSummary {
  double step_time_s = 0, bubble_s = 0, exposed_comm_s = 0;  // bubble and comm: mean over ranks
  double tokens_per_step = 0, tokens_per_s = 0, tokens_per_s_per_gpu = 0;
  double mfu = 0, mfu_fp8_peak = 0, hfu = 0;
  double gpu_hours_per_trillion_tokens = 0, days_per_trillion_tokens = 0;
  MemoryPerGpu memory;  // worst rank: static + simulated peak activations
  // Mean over ranks; sums to step_time_s.
  double gemm_s = 0, attention_s = 0, memory_bound_s = 0;
  double exposed_a2a_s = 0, exposed_p2p_s = 0, dp_tail_s = 0;
};
StepSummary summarize_step(const JobCost& job, const Schedule& s, const SimResult& r, const ClusterSpec& c,
                           const Layout& layout);

}  // namespace duet::sched
