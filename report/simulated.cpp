#include "report/simulated.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "report/format.h"

namespace duet::report {
namespace {

constexpr double kGiB = 1024.0 * 1024 * 1024;

bool is_deepseek_v3(const sched::ModelShape& m) {
  return m.vocab == 129280 && m.d_model == 7168 && m.layers == 61 && m.experts == 256 && m.top_k == 8;
}

// What the model FLOPs count, for this model (its attention, its experts, MTP if any).
std::string mfu_convention(const SimOutcome& o) {
  const sched::ModelShape& m = o.in.model;
  std::string counted = m.mla ? "MLA projections" : "attention projections";
  counted += ", causal attention core counted over the s(s+1)/2 visible pairs";
  if (m.layers > m.dense_layers) {
    counted += std::string(", top-k routed") + (m.shared_experts > 0 ? " + shared" : "") + " experts";
    if (m.dense_layers > 0) counted += ", dense FFNs";
    counted += ", router";
  } else {
    counted += ", FFNs";
  }
  counted += ", output head";
  if (m.mtp_depth > 0) counted += ", MTP modules";
  return "model FLOPs = 3 x forward FLOPs of every matmul (" + counted +
         "), no recomputation; divided by GPUs x dense BF16 peak (" + fmt("%g", o.in.cluster.bf16_tflops) +
         " TFLOP/s)" + (is_deepseek_v3(m) ? ", as DeepSeek normalises" : "");
}

// Timeline events of pipeline 0: compute split into its parts (an F&B pair's forward and
// backward, exposed all-to-all at the end of an op), then DP synchronisation.
std::vector<ReportEvent> timeline_events(const SimOutcome& o, const sched::SimResult& r) {
  std::vector<ReportEvent> out;
  const sched::Placement place = o.schedule.placement();
  for (const sched::Event& e : r.events) {
    if (e.rank >= o.schedule.ranks) continue;
    if (e.kind == sched::EventKind::DpSync) {
      out.push_back({e.rank, "dp", "DP sync dir " + std::to_string(e.dir), e.t0, e.t1});
      continue;
    }
    if (e.kind != sched::EventKind::Compute) continue;
    const sched::Op& op = o.schedule.ops[e.rank][e.op_index];
    const sched::StageCost& a = o.job.stages[place.stage_of(e.rank, op.dir)].cost;
    double t = e.t0;
    auto part = [&](const char* kind, std::string label, double dur) {
      if (dur <= 0) return;
      out.push_back({e.rank, kind, std::move(label), t, std::min(t + dur, e.t1)});
      t += dur;
    };
    switch (op.kind) {
      case sched::OpKind::F: part("F", sched::format_op(op), a.f); break;
      case sched::OpKind::B: part("B", sched::format_op(op), a.b); break;
      case sched::OpKind::I: part("I", sched::format_op(op), a.i); break;
      case sched::OpKind::W: part("W", sched::format_op(op), a.w); break;
      case sched::OpKind::FB: {
        const sched::StageCost& b = o.job.stages[place.stage_of(e.rank, op.dir2)].cost;
        part("F", sched::format_op({sched::OpKind::F, op.dir, op.microbatch}), a.f);
        part("B", sched::format_op({sched::OpKind::B, op.dir2, op.microbatch2}), b.b);
        break;
      }
    }
    if (e.t1 - t > 1e-12) out.push_back({e.rank, "a2a", "exposed all-to-all", t, e.t1});
  }
  return out;
}

}  // namespace

Report simulated_report(const SimOutcome& o, const SimLabels& labels) {
  const sched::StepSummary& s = o.summary;
  const sched::Layout& l = o.in.layout;
  Report r;
  r.title = "Throughput report: " + labels.run_name;
  r.source = "simulated";
  r.subtitle = std::to_string(o.in.cluster.gpus) + " × " + labels.gpu + ", PP " + std::to_string(l.pp) + " (" +
               sched::format_schedule_kind(l.schedule) + ") × DP " + std::to_string(l.dp) + ", EP " +
               std::to_string(l.ep) + ", " + std::to_string(l.microbatches()) + " micro-batches of " +
               std::to_string(l.micro_batch_size * l.seq_len) + " tokens per pipeline";
  using F = ReportField;
  const auto& mem = s.memory;
  r.headline = {
      F::num("step_time_s", "step time", s.step_time_s, "s"),
      F::num("bubble_s", "pipeline bubble (mean over ranks)", s.bubble_s, "s"),
      F::num("bubble_fraction", "bubble / step time", s.bubble_s / s.step_time_s),
      F::num("exposed_comm_s", "exposed communication (mean over ranks)", s.exposed_comm_s, "s"),
      F::num("tokens_per_step", "tokens per step", s.tokens_per_step),
      F::num("tokens_per_s", "tokens per second", s.tokens_per_s),
      F::num("tokens_per_s_per_gpu", "tokens per second per GPU", s.tokens_per_s_per_gpu),
      F::num("tokens_per_day", "tokens per day", s.tokens_per_s * 86400),
      F::num("model_flops_per_token", "model FLOPs per token", o.job.model_flops_per_token),
      F::num("hardware_flops_per_token", "hardware FLOPs per token (with recomputation)",
             o.job.hardware_flops_per_token),
      F::num("hfu", "HFU (hardware FLOPs, recomputation included, against the dense BF16 peak)", s.hfu),
      F::num("mfu", "MFU", s.mfu),
      F::str("mfu_convention", "MFU convention", mfu_convention(o)),
      F::num("mfu_fp8_peak", "MFU against the dense FP8 peak", s.mfu_fp8_peak),
      F::num("gpu_hours_per_trillion_tokens", "GPU-hours per trillion tokens", s.gpu_hours_per_trillion_tokens),
      F::num("days_per_trillion_tokens", "days per trillion tokens on this cluster", s.days_per_trillion_tokens),
      F::grp("memory_per_gpu_gib", "memory per GPU (worst rank)",
             {{"weights", mem.weights / kGiB},
              {"gradients", mem.gradients / kGiB},
              {"optimizer", mem.optimizer / kGiB},
              {"peak_activations", mem.activations / kGiB},
              {"total", mem.total() / kGiB}},
             "GiB"),
      F::num("hbm_gib", "HBM per GPU", o.in.cluster.hbm_gib, "GiB"),
      F::str("memory_fits", "fits in HBM", mem.total() / kGiB <= o.in.cluster.hbm_gib ? "yes" : "no"),
  };
  if (is_deepseek_v3(o.in.model)) {
    auto& p = r.published;
    p.metric = "gpu_hours_per_trillion_tokens";
    p.source = "DeepSeek-V3 Technical Report (arXiv 2412.19437), §1: 180K H800 GPU-hours per trillion tokens";
    p.published = kPublishedGpuHoursPerTrillion;
    p.predicted = s.gpu_hours_per_trillion_tokens;
    const double gap = 100 * (p.ratio() - 1);
    p.note = "Prediction " + fmt("%+.1f%%", gap) +
             " against the published average. The published figure averages the whole 14.8T-token run: the "
             "batch-size ramp (3,072 to 15,360 sequences over the first 469B tokens), restarts after failures, "
             "checkpoints, evaluation and uneven expert load are in it; this one-step simulation of balanced routing "
             "has none of them, so it should come out somewhat below" +
             (gap > 0 ? std::string(" — it comes out above: the inputs cost more than the published run's "
                                    "(another cluster, layout or efficiency given)")
                      : std::string()) +
             ". Details: docs/cost-model.md.";
  }
  r.breakdown = {{"GEMMs", s.gemm_s},
                 {"attention core", s.attention_s},
                 {"memory-bound kernels", s.memory_bound_s},
                 {"exposed all-to-all", s.exposed_a2a_s},
                 {"exposed pipeline sends", s.exposed_p2p_s},
                 {"DP sync + optimizer tail", s.dp_tail_s},
                 {"pipeline bubble", s.bubble_s}};
  for (int rank = 0; rank < l.pp; ++rank) {
    const auto& st = o.result.rank_stats[rank];
    r.busy_per_rank.push_back(st.busy);
    r.bubble_per_rank.push_back(st.bubble);
    r.exposed_comm_per_rank.push_back(st.exposed_comm);
  }
  // The timeline of one pipeline: the pipelines are identical, so one pipeline simulated with
  // its events recorded draws what every pipeline does.
  sched::SimConfig one = o.job.sim;
  one.pipelines = 1;
  one.record_timeline = true;
  r.timeline = timeline_events(o, sched::simulate(o.schedule, one));
  r.timeline_title = "pipeline 0, " + sched::format_schedule_kind(l.schedule) + ", " + std::to_string(l.pp) +
                     " ranks, one step";

  ReportTable stages{"Stages (one chunk = one micro-batch through one stage)",
                         {"stage", "layers", "MoE layers", "extras", "F ms", "B ms", "W ms", "F a2a ms", "B a2a ms",
                          "activations GiB", "dense params (B)", "expert params/GPU (B)", "DP sync + opt ms"},
                         {}};
  for (size_t k = 0; k < o.job.stages.size(); ++k) {
    const auto& st = o.job.stages[k];
    std::string extras = std::string(st.embedding ? "embedding " : "") + (st.head ? "head " : "") +
                         (st.mtp_modules ? "MTP×" + std::to_string(st.mtp_modules) : "");
    const std::string layers = st.end_layer > st.first_layer  // a stage of only the head (and MTP) has none
                                   ? std::to_string(st.first_layer) + "–" + std::to_string(st.end_layer - 1)
                                   : "-";
    stages.rows.push_back({std::to_string(k), layers,
                           std::to_string(st.moe_layers), extras.empty() ? "-" : extras, fmt("%.1f", 1e3 * st.cost.f),
                           fmt("%.1f", 1e3 * st.cost.b), fmt("%.1f", 1e3 * st.cost.w),
                           fmt("%.1f", 1e3 * st.cost.f_a2a), fmt("%.1f", 1e3 * st.cost.b_a2a),
                           fmt("%.2f", st.cost.activation_memory / kGiB), fmt("%.3f", st.dense_params / 1e9),
                           fmt("%.3f", st.expert_params_local / 1e9), fmt("%.1f", 1e3 * st.cost.dp_sync)});
  }
  r.tables.push_back(stages);
  const auto& rt = o.job.routing;
  const auto& e = o.in.efficiencies;
  r.tables.push_back({"Cost-model inputs (sources in docs/cost-model.md)",
                      {"quantity", "value"},
                      {{"compute SMs", std::to_string(o.in.cluster.sms - o.in.cluster.comm_sms) + " of " +
                                           std::to_string(o.in.cluster.sms)},
                       {"GEMM efficiency (F, dgrad)", fmt("%.2f", e.gemm)},
                       {"GEMM efficiency (wgrad)", fmt("%.2f", e.wgrad)},
                       {"attention efficiency (fwd / bwd)", fmt("%.2f", e.attention_fwd) + " / " + fmt("%.2f", e.attention_bwd)},
                       {"HBM efficiency", fmt("%.2f", e.hbm)},
                       {"nodes reached per token", fmt("%.3f", rt.nodes_reached)},
                       {"IB copies per token per dispatch", fmt("%.3f", rt.ib_copies)},
                       {"NVLink copies per token per dispatch", fmt("%.3f", rt.nvlink_copies)}}});
  r.notes = {
      "Pipelines are identical (balanced routing, no stragglers); every rank of every pipeline is simulated.",
      "Memory excludes CUDA context, communication buffers and allocator fragmentation (a few GiB in practice).",
      "Layers are split over stages to balance predicted time; the embedding sits on the first stage, the "
      "output head and MTP modules on the last.",
  };
  return r;
}

}  // namespace duet::report
