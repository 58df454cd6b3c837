#include "apps/simulate_job.h"

#include "core/layout.h"
#include "scheduler/schedule_size.h"

#include <cstdio>
#include <stdexcept>
#include <string>

namespace duet::app {

SimInputs simulation_inputs(const io::RunConfig& cfg) {
  SimInputs in;
  const auto& m = cfg.model;
  auto& s = in.model;
  s.vocab = m.vocab, s.d_model = m.d_model, s.layers = m.layers, s.heads = m.heads;
  s.dense_layers = m.dense_layers, s.d_ff = m.d_ff;
  s.mla = m.attention == io::AttentionKind::kMLA;
  s.q_lora_rank = m.mla.q_lora_rank, s.kv_lora_rank = m.mla.kv_lora_rank;
  s.qk_nope_head_dim = m.mla.qk_nope_head_dim, s.qk_rope_head_dim = m.mla.qk_rope_head_dim;
  s.v_head_dim = m.mla.v_head_dim;
  s.experts = m.moe.experts, s.top_k = m.moe.top_k, s.shared_experts = m.moe.shared_experts;
  s.d_expert = m.moe.d_expert, s.expert_groups = m.moe.groups, s.group_limit = m.moe.group_limit;
  s.mtp_depth = m.mtp_depth;
  s.precision = m.precision == io::Precision::kFP8    ? sched::GemmPrecision::FP8
                : m.precision == io::Precision::kBF16 ? sched::GemmPrecision::BF16
                                                      : sched::GemmPrecision::FP32;
  const auto& c = cfg.cluster;
  auto& h = in.cluster;
  h.gpus = c.gpus, h.gpus_per_node = c.gpus_per_node;
  h.bf16_tflops = c.bf16_tflops, h.fp8_tflops = c.fp8_tflops, h.hbm_gib = c.hbm_gib, h.hbm_tbps = c.hbm_tbps;
  h.sms = c.sms, h.comm_sms = c.comm_sms, h.nvlink_gbps = c.nvlink_gbps, h.ib_gbps = c.ib_gbps;
  h.nvlink_latency_us = c.nvlink_latency_us, h.ib_latency_us = c.ib_latency_us;
  auto& e = in.efficiencies;
  e.gemm = c.gemm_efficiency, e.wgrad = c.wgrad_efficiency, e.attention_fwd = c.attention_fwd_efficiency;
  e.attention_bwd = c.attention_bwd_efficiency, e.hbm = c.hbm_efficiency;
  auto& l = in.layout;
  l.schedule = core::effective_schedule(cfg.parallel.schedule, cfg.parallel.pp);  // PP 1 trains 1F1B: simulate that
  l.pp = cfg.parallel.pp, l.dp = cfg.parallel.dp, l.ep = cfg.parallel.ep;
  l.seq_len = cfg.train.seq_len, l.micro_batch_size = cfg.train.micro_batch_size;
  l.global_batch = cfg.train.global_batch;
  return in;
}

SimOutcome simulate_config(const io::RunConfig& cfg) {
  SimOutcome o;
  o.in = simulation_inputs(cfg);
  const sched::Layout& l = o.in.layout;
  // The simulator keeps state per op of every pipeline replica: refuse what cannot fit.
  const double sim_ops = (double)sched::schedule_op_bound(l.schedule, l.pp, l.microbatches()) * l.dp;
  if (sim_ops > (double)sched::kMaxScheduleOps)
    throw std::invalid_argument("parallel.pp=" + std::to_string(l.pp) + " × parallel.dp=" + std::to_string(l.dp) +
                                " pipelines × " + std::to_string(l.microbatches()) +
                                " micro-batches (train.global_batch / (parallel.dp × train.micro_batch_size)) is up to " +
                                std::to_string((long long)sim_ops) + " simulated ops, more than the " +
                                std::to_string(sched::kMaxScheduleOps) + " duet simulates");
  try {
    o.schedule = sched::make_schedule(l.schedule, l.pp, l.microbatches());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("parallel.schedule=" + core::format_schedule_kind(cfg.parallel.schedule) +
                                " with parallel.pp=" + std::to_string(l.pp) + " and " +
                                std::to_string(l.microbatches()) +
                                " micro-batches (train.global_batch / (parallel.dp × train.micro_batch_size)): " +
                                e.what());
  }
  o.job = sched::build_job_cost(o.in.model, o.in.cluster, o.in.efficiencies, l);
  o.result = sched::simulate(o.schedule, o.job.sim);
  o.summary = sched::summarize_step(o.job, o.schedule, o.result, o.in.cluster, l);
  return o;
}

GoodputPlan plan_goodput(const io::RunConfig& cfg, const SimOutcome& o) {
  GoodputPlan p;
  double params = 0;
  for (const sched::Piece& piece : sched::model_pieces(o.in.model, o.in.layout, o.in.cluster))
    params += piece.dense_params + piece.expert_params;
  p.checkpoint_bytes = params * kCheckpointBytesPerParam;
  auto& in = p.in;
  in.step_time_s = o.summary.step_time_s, in.tokens_per_step = o.summary.tokens_per_step;
  in.gpus = o.in.cluster.gpus;
  in.interruptions_per_gpu_day = cfg.goodput.interruptions_per_gpu_day;
  in.restart_s = cfg.goodput.restart_s;
  in.interval_steps = cfg.checkpoint.every;
  char text[160];
  if (cfg.goodput.checkpoint_save_s > 0) {
    in.save_s = cfg.goodput.checkpoint_save_s;
    p.save_source = "goodput.checkpoint_save_s";
  } else {
    in.save_s = p.checkpoint_bytes / (cfg.goodput.checkpoint_write_gbps * 1e9);
    std::snprintf(text, sizeof text, "%.3g TB of FP32 weights and BF16 moments at %g GB/s", p.checkpoint_bytes / 1e12,
                  cfg.goodput.checkpoint_write_gbps);
    p.save_source = text;
  }
  p.model = report::expected_goodput(in);
  return p;
}

}  // namespace duet::app
