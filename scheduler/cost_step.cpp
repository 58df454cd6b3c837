// From per-token piece costs (cost_model.cpp) to one training step: stages balanced by
// predicted time, their StageCost for the simulator, DP synchronisation, memory per GPU, and
// the summary of a simulated step.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "scheduler/cost_model.h"

namespace duet::sched {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument("cost model: " + msg); }

struct Rates {
  double gemm_peak, bf16_peak, hbm;  // FLOP/s and byte/s available to compute
  Efficiencies e;
};

// Time of `tokens` tokens of one piece, split into F, I and W.
void piece_time(const Piece& p, double tokens, const Rates& r, TimeSplit& f, TimeSplit& i, TimeSplit& w) {
  const PieceFlops& fl = p.flops;
  f.gemm += tokens * (fl.gemm / (r.gemm_peak * r.e.gemm) + fl.gemm_bf16 / (r.bf16_peak * r.e.gemm));
  f.attention += tokens * fl.attention / (r.bf16_peak * r.e.attention_fwd);
  f.memory += tokens * p.bytes.mem_f / (r.hbm * r.e.hbm);
  i.gemm += tokens * ((fl.gemm + fl.recompute) / (r.gemm_peak * r.e.gemm) + fl.gemm_bf16 / (r.bf16_peak * r.e.gemm));
  // Attention backward: recompute the scores, then dV, dP, dQ, dK: 2.5x the forward's matmuls.
  i.attention += tokens * 2.5 * fl.attention / (r.bf16_peak * r.e.attention_bwd);
  i.memory += tokens * p.bytes.mem_i / (r.hbm * r.e.hbm);
  w.gemm += tokens * (fl.gemm / (r.gemm_peak * r.e.wgrad) + fl.gemm_bf16 / (r.bf16_peak * r.e.wgrad));
  w.memory += tokens * p.bytes.mem_w / (r.hbm * r.e.hbm);
}

// Reduce-scatter (or all-gather) of `bytes` per GPU over `group` ranks, `per_node` of them on
// each node: the NVLink share inside the node, then 1/per_node of it across nodes on each NIC.
double collective_time(double bytes, double group, double per_node, const ClusterSpec& c) {
  if (group <= 1) return 0;
  per_node = std::clamp(per_node, 1.0, group);
  const double nodes = group / per_node;
  double t = bytes * (per_node - 1) / per_node / (c.nvlink_gbps * 1e9);
  if (nodes > 1) t += bytes / per_node * (nodes - 1) / nodes / (c.ib_gbps * 1e9) + 2 * (nodes - 1) * c.ib_latency_us * 1e-6;
  return t;
}

void add_split(TimeSplit& into, const TimeSplit& x) {
  into.gemm += x.gemm, into.attention += x.attention, into.memory += x.memory;
}

}  // namespace

JobCost build_job_cost(const ModelShape& m, const ClusterSpec& c, const Efficiencies& e, const Layout& lay) {
  if (lay.pp < 1 || lay.dp < 1 || lay.ep < 1) fail("pp, dp and ep must be >= 1");
  if (static_cast<long long>(lay.pp) * lay.dp != c.gpus)
    fail("parallel.pp × parallel.dp (" + std::to_string(lay.pp) + " × " + std::to_string(lay.dp) + " = " +
         std::to_string(static_cast<long long>(lay.pp) * lay.dp) + ") must equal cluster.gpus (" +
         std::to_string(c.gpus) + ")");
  if (lay.dp % lay.ep != 0) fail("parallel.ep must divide parallel.dp");
  if (lay.global_batch % (lay.dp * lay.micro_batch_size) != 0)
    fail("train.global_batch must be divisible by parallel.dp × train.micro_batch_size");
  if (c.comm_sms >= c.sms) fail("cluster.comm_sms must be < cluster.sms");
  const Placement place(lay.schedule, lay.pp);
  const int S = place.num_stages();
  if (m.layers < S)
    fail("model.layers (" + std::to_string(m.layers) + ") must be ≥ the pipeline stages (" + std::to_string(S) +
         " for " + format_schedule_kind(lay.schedule) + " on " + std::to_string(lay.pp) + " ranks)");

  JobCost job;
  const double T = static_cast<double>(lay.micro_batch_size) * lay.seq_len;
  job.tokens_per_microbatch = T;
  job.routing = expected_routing(m, lay.ep, c.gpus_per_node);
  const double compute_share = static_cast<double>(c.sms - c.comm_sms) / c.sms;
  const double prec_peak = m.precision == GemmPrecision::FP8    ? c.fp8_tflops
                           : m.precision == GemmPrecision::BF16 ? c.bf16_tflops
                                                                : c.bf16_tflops / 2;  // FP32 GEMMs run as TF32
  const Rates rates{prec_peak * 1e12 * compute_share, c.bf16_tflops * 1e12 * compute_share, c.hbm_tbps * 1e12, e};

  const std::vector<Piece> pieces = model_pieces(m, lay, c);
  for (const Piece& p : pieces) {
    job.model_flops_per_token += 3 * p.flops.model_forward();
    // What the GPUs run besides: the recomputed GEMMs, and the attention backward's recompute
    // of the scores (2.5 forwards where the model counts 2; piece_time charges it the same way).
    job.hardware_flops_per_token += 3 * p.flops.model_forward() + p.flops.recompute + 0.5 * p.flops.attention;
  }

  // pieces[0] is the embedding (first stage), then the layers, then MTP modules and the head
  // (last stage). Stage boundaries fall between layers.
  auto fb_time = [&](const Piece& p) {
    TimeSplit f, i, w;
    piece_time(p, T, rates, f, i, w);
    return f.total() + i.total() + w.total();
  };
  std::vector<double> layer_cost;
  for (int l = 0; l < m.layers; ++l) layer_cost.push_back(fb_time(pieces[1 + l]));
  double tail = 0;
  for (size_t k = 1 + m.layers; k < pieces.size(); ++k) tail += fb_time(pieces[k]);

  const double copies = place.num_model_copies();       // DualPipe keeps two copies of every stage
  const double dp_group = lay.dp * copies;            // ranks holding one dense parameter
  const double expert_replicas = static_cast<double>(lay.dp) / lay.ep * copies;
  const double per_node_dense = std::min<double>(c.gpus_per_node, lay.dp);  // pp-major rank order
  const double per_node_expert = std::max(1.0, static_cast<double>(c.gpus_per_node) / lay.ep);
  const double nvl = c.nvlink_gbps * 1e9, ib = c.ib_gbps * 1e9;
  const double act_bytes = m.precision == GemmPrecision::FP32 ? 4 : 2;
  const double weight_bytes = act_bytes, grad_bytes = 4;  // FP32 gradients for accumulation (§3.3.3)
  const double lat = job.routing.ib_copies > 0 ? c.ib_latency_us * 1e-6 : c.nvlink_latency_us * 1e-6;

  auto make_stage = [&](int s, int first, int end) {
    StagePlan st;
    st.first_layer = first, st.end_layer = end;
    st.embedding = s == 0, st.head = s == S - 1;
    std::vector<const Piece*> mine;
    if (st.embedding) mine.push_back(&pieces[0]);
    for (int l = first; l < end; ++l) mine.push_back(&pieces[1 + l]);
    if (st.head)
      for (size_t k = 1 + m.layers; k < pieces.size(); ++k) mine.push_back(&pieces[k]);
    PieceBytes b;
    double expert_params = 0;
    for (const Piece* p : mine) {
      piece_time(*p, T, rates, st.f, st.i, st.w);
      st.mtp_modules += p->kind == PieceKind::Mtp;
      st.moe_layers += p->moe_layers;
      st.dense_params += p->dense_params;
      expert_params += p->expert_params;
      b.activation += p->bytes.activation, b.weight_grad += p->bytes.weight_grad;
      b.a2a_ib_f += p->bytes.a2a_ib_f, b.a2a_nvl_f += p->bytes.a2a_nvl_f;
      b.a2a_ib_b += p->bytes.a2a_ib_b, b.a2a_nvl_b += p->bytes.a2a_nvl_b;
    }
    st.expert_params_local = expert_params / lay.ep;
    st.dp_group = dp_group, st.expert_replicas = expert_replicas;

    StageCost& sc = st.cost;
    sc.f = st.f.total(), sc.i = st.i.total(), sc.w = st.w.total();
    sc.b = sc.i + sc.w, sc.fb = sc.f + sc.b;
    // Each MoE layer runs a dispatch and a combine; IB and NVLink legs are pipelined.
    auto a2a = [&](double ib_b, double nvl_b) {
      if (st.moe_layers == 0 || (ib_b == 0 && nvl_b == 0)) return 0.0;
      return std::max(T * ib_b / ib, T * nvl_b / nvl) + 2 * st.moe_layers * lat;
    };
    sc.f_a2a = a2a(b.a2a_ib_f, b.a2a_nvl_f);
    sc.b_a2a = a2a(b.a2a_ib_b, b.a2a_nvl_b);
    sc.activation_bytes = sc.gradient_bytes = T * m.d_model * act_bytes;
    sc.activation_memory = T * b.activation;
    sc.weight_grad_memory = T * b.weight_grad;
    // ZeRO-1: reduce-scatter FP32 gradients, update the local shard, all-gather the weights.
    const double dense = st.dense_params, local_e = st.expert_params_local;
    st.grad_sync_s = collective_time(grad_bytes * dense, dp_group, per_node_dense, c) +
                     collective_time(weight_bytes * dense, dp_group, per_node_dense, c) +
                     collective_time(grad_bytes * local_e, expert_replicas, per_node_expert, c) +
                     collective_time(weight_bytes * local_e, expert_replicas, per_node_expert, c);
    // AdamW on the shard: read the gradient, read+write FP32 master and two moments (BF16 for
    // mixed precision, DeepSeek-V3 §3.3.3), write the weight: 22 bytes per parameter.
    const double shard = dense / dp_group + local_e / expert_replicas;
    st.optimizer_s = shard * (act_bytes == 4 ? 30 : 22) / (c.hbm_tbps * 1e12 * e.hbm);
    sc.dp_sync = st.grad_sync_s + st.optimizer_s;
    return st;
  };
  auto make_stages = [&](const std::vector<int>& bounds) {
    std::vector<StagePlan> stages;
    for (int s = 0; s < S; ++s) stages.push_back(make_stage(s, bounds[s], bounds[s + 1]));
    return stages;
  };

  SimConfig& sim = job.sim;
  sim.link_classes = {{c.nvlink_latency_us * 1e-6, nvl}, {c.ib_latency_us * 1e-6, ib}};
  // Global rank g = pipeline × pp + rank; GPUs are numbered pp-major (a node holds consecutive
  // data-parallel replicas of one pipeline rank, as DeepSeek-V3's EP groups need).
  const int pp = lay.pp, dp = lay.dp, gpn = c.gpus_per_node;
  sim.link_class = [pp, dp, gpn](int from, int to) {
    auto node = [&](int g) { return (static_cast<long long>(g % pp) * dp + g / pp) / gpn; };
    return node(from) == node(to) ? 0 : 1;
  };
  sim.record_timeline = false;
  auto set_stages = [&](const std::vector<StagePlan>& stages) {
    sim.stages.clear();  // SimConfig starts with one default stage
    for (const StagePlan& st : stages) sim.stages.push_back(st.cost);
  };

  // The split: stages balanced by F + B time; for DualPipe(V), whose ranks hold stages s and
  // S-1-s, also every split of the two outer stages around a balanced middle. The simulator
  // of one pipeline, not a formula, picks the fastest (the step of every pipeline is the same).
  std::vector<std::vector<int>> candidates = {balance_stages(layer_cost, S, fb_time(pieces[0]), tail)};
  if (place.num_dirs() == 2 && S >= 4) {
    const int avg = std::max(1, m.layers / S);
    for (int a = 1; a <= 3 * avg && a + (S - 2) <= m.layers; ++a)
      for (int b = 0; b <= 2 * avg && a + b + (S - 2) <= m.layers; ++b) {
        const std::vector<double> mid(layer_cost.begin() + a, layer_cost.end() - b);
        std::vector<int> bounds = {0};
        for (int x : balance_stages(mid, S - 2, 0, 0)) bounds.push_back(a + x);
        bounds.push_back(m.layers);
        candidates.push_back(bounds);
      }
  }
  if (candidates.size() > 1) {
    const Schedule schedule = make_schedule(lay.schedule, lay.pp, lay.microbatches());
    double best = std::numeric_limits<double>::infinity();
    size_t best_k = 0;
    sim.pipelines = 1;
    for (size_t k = 0; k < candidates.size(); ++k) {
      set_stages(make_stages(candidates[k]));
      const double t = simulate(schedule, sim).makespan;
      if (t < best) best = t, best_k = k;
    }
    job.stages = make_stages(candidates[best_k]);
  } else {
    job.stages = make_stages(candidates[0]);
  }
  set_stages(job.stages);
  sim.pipelines = lay.dp;

  // Static memory per pipeline rank: the stages it holds (two for DualPipe and DualPipeV).
  for (int r = 0; r < lay.pp; ++r) {
    MemoryPerGpu mem;
    for (int d = 0; d < place.num_dirs(); ++d) {
      const StagePlan& st = job.stages[place.stage_of(r, d)];
      const double held = st.dense_params + st.expert_params_local;
      mem.weights += weight_bytes * held;
      mem.gradients += grad_bytes * held;
      mem.optimizer += 8 * (st.dense_params / dp_group + st.expert_params_local / expert_replicas);
    }
    job.static_memory.push_back(mem);
  }
  return job;
}

StepSummary summarize_step(const JobCost& job, const Schedule& s, const SimResult& r, const ClusterSpec& c,
                           const Layout& lay) {
  StepSummary out;
  const double gpus = static_cast<double>(lay.pp) * lay.dp;
  out.step_time_s = r.makespan;
  out.tokens_per_step = static_cast<double>(lay.global_batch) * lay.seq_len;
  out.tokens_per_s = out.tokens_per_step / r.makespan;
  out.tokens_per_s_per_gpu = out.tokens_per_s / gpus;
  out.mfu = job.model_flops_per_token * out.tokens_per_s_per_gpu / (c.bf16_tflops * 1e12);
  out.mfu_fp8_peak = job.model_flops_per_token * out.tokens_per_s_per_gpu / (c.fp8_tflops * 1e12);
  out.hfu = job.hardware_flops_per_token * out.tokens_per_s_per_gpu / (c.bf16_tflops * 1e12);
  out.gpu_hours_per_trillion_tokens = 1e12 / out.tokens_per_s_per_gpu / 3600;
  out.days_per_trillion_tokens = 1e12 / out.tokens_per_s / 86400;

  const Placement place = s.placement();
  const int R = s.ranks, G = static_cast<int>(r.rank_stats.size());
  auto stage_cost = [&](int rank, int dir) -> const StagePlan& { return job.stages[place.stage_of(rank, dir)]; };
  for (int g = 0; g < G; ++g) {
    const int rank = g % R;
    const RankStats& st = r.rank_stats[g];
    TimeSplit busy;
    double a2a = 0;
    for (const Op& op : s.ops[rank]) {
      const StagePlan& a = stage_cost(rank, op.dir);
      switch (op.kind) {
        case OpKind::F: add_split(busy, a.f), a2a += a.cost.f_a2a; break;
        case OpKind::B: add_split(busy, a.i), add_split(busy, a.w), a2a += a.cost.b_a2a; break;
        case OpKind::I: add_split(busy, a.i), a2a += a.cost.b_a2a; break;
        case OpKind::W: add_split(busy, a.w); break;
        case OpKind::FB: {
          const StagePlan& b = stage_cost(rank, op.dir2);
          add_split(busy, a.f), add_split(busy, b.i), add_split(busy, b.w);
          const double compute = a.cost.f + b.cost.b;
          a2a += std::max(0.0, a.cost.f_a2a + b.cost.b_a2a - compute);
          break;
        }
      }
    }
    const double tail = st.finish - st.compute_end;
    out.gemm_s += busy.gemm, out.attention_s += busy.attention, out.memory_bound_s += busy.memory;
    out.exposed_a2a_s += a2a, out.dp_tail_s += tail;
    out.exposed_p2p_s += std::max(0.0, st.exposed_comm - a2a - tail);
    out.bubble_s += st.bubble, out.exposed_comm_s += st.exposed_comm;

    MemoryPerGpu mem = job.static_memory[rank];
    mem.activations = st.peak_memory;
    if (mem.total() > out.memory.total()) out.memory = mem;
  }
  for (double* x : {&out.gemm_s, &out.attention_s, &out.memory_bound_s, &out.exposed_a2a_s, &out.dp_tail_s,
                    &out.exposed_p2p_s, &out.bubble_s, &out.exposed_comm_s})
    *x /= G;
  return out;
}

}  // namespace duet::sched
