#include "report/measured.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <stdexcept>

#include "report/accounting.h"
#include "report/trace_reader.h"
#include "scheduler/simulate.h"

namespace fs = std::filesystem;

namespace duet::report {
namespace {

using core::TraceCategory;
using core::TraceEvent;
using core::TraceThread;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Steady-state steps: all but the first two (allocation, warm-up) and evaluation steps.
std::vector<StepMetrics> steady_steps(const std::vector<StepMetrics>& rows) {
  std::vector<StepMetrics> steady;
  for (const auto& r : rows)
    if ((r.step > 2 || rows.size() <= 2) && !r.eval) steady.push_back(r);
  return steady.empty() ? rows : steady;
}

// Per-stage costs for the simulator: medians of the lone ops measured, and pairs priced by
// what they measured. One CPU computes both halves of a pair in turn, and a pair costs more
// than its halves do alone (a second thread, baton hand-overs, caches shared by two
// micro-batches). The simulator prices a pair F_a & B_b as fb_a·f_a/(f_a+b_a) +
// fb_b·b_b/(f_b+b_b); with fb = k·(f + b) for every stage that is k·(f_a + b_b), and k is the
// median measured ratio.
std::vector<sched::StageCost> stage_costs(const OpCostSamples& m, int stages, double activation_bytes,
                                          double dp_sync) {
  std::vector<sched::StageCost> out;
  for (int s = 0; s < stages; ++s) {
    auto at = [s](const std::map<int, std::vector<double>>& by_stage) {
      const auto it = by_stage.find(s);
      return it == by_stage.end() ? std::vector<double>{} : it->second;
    };
    sched::StageCost c;
    c.f = median(at(m.f));
    c.b = at(m.b).empty() ? median(at(m.i)) + median(at(m.w)) : median(at(m.b));
    c.i = at(m.i).empty() ? c.b / 2 : median(at(m.i));
    c.w = at(m.w).empty() ? c.b / 2 : median(at(m.w));
    c.fb = c.f + c.b;  // scaled below by what pairs measured
    c.f_a2a = median(at(m.f_all2all)), c.b_a2a = median(at(m.b_all2all));
    c.activation_bytes = c.gradient_bytes = activation_bytes;
    c.dp_sync = dp_sync;
    out.push_back(c);
  }
  if (!m.pairs.empty()) {
    std::vector<double> ratio;
    for (const auto& p : m.pairs) {
      const double lone = out[p.stage_f].f + out[p.stage_b].b;
      if (lone > 0) ratio.push_back(p.compute / lone);
    }
    const double k = ratio.empty() ? 1.0 : median(ratio);
    for (auto& c : out) c.fb = k * (c.f + c.b);
  }
  return out;
}

std::string timeline_kind(const TraceEvent& e) {
  switch (e.cat) {
    case TraceCategory::Compute:
      return e.op.op != core::TraceOp::None ? std::string(1, core::trace_op_letter(e.op.op)) : "compute";
    case TraceCategory::All2all: return "a2a";
    case TraceCategory::Dp: return "dp";
    case TraceCategory::Idle: return "idle";
    default: return "p2p";
  }
}

std::string ms(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", s * 1e3);
  return buf;
}

}  // namespace

std::vector<StepMetrics> read_metrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  auto num = [](const std::string& line, const char* key, double& out) {
    std::smatch m;
    if (std::regex_search(line, m, std::regex(std::string("\"") + key + "\":([-0-9.eE+]+)"))) out = std::stod(m[1]);
  };
  // Append-only across restarts: a resumed run writes {"event":"resume",...} and then steps
  // an earlier attempt may have written too. Each step's last line counts, once.
  std::map<int, StepMetrics> by_step;
  for (std::string line; std::getline(in, line);) {
    StepMetrics r;
    double step = -1;
    num(line, "step", step);
    if (step < 0) continue;
    r.step = (int)step;
    num(line, "step_time_s", r.step_time);
    num(line, "tokens_per_s", r.tokens_per_s);
    num(line, "grad_sync_s", r.grad_sync);
    num(line, "cpu_s", r.cpu_s);
    r.eval = line.find("\"val_loss\"") != std::string::npos;
    by_step[r.step] = r;
  }
  if (by_step.empty()) throw std::runtime_error(path + " holds no steps");
  std::vector<StepMetrics> rows;
  for (const auto& [step, r] : by_step) rows.push_back(r);
  return rows;
}

Report measured_report(const std::string& name, const RunShape& shape, const std::vector<StepMetrics>& metrics,
                       const std::vector<std::vector<TraceEvent>>& all_traces) {
  const int world = shape.pp * shape.dp;
  if ((int)all_traces.size() != world)
    throw std::invalid_argument("measured_report: " + std::to_string(all_traces.size()) + " traces for " +
                                std::to_string(world) + " ranks");
  // The GPU thread's events are device time, not a host thread's: the accounting below is of
  // the host threads; the GPU's share is a note of its own.
  std::vector<std::vector<TraceEvent>> traces(world);
  std::vector<std::map<int, double>> gpu_busy(world);  // per rank: step → kernel seconds
  bool any_gpu = false;
  for (int r = 0; r < world; ++r)
    for (const auto& e : all_traces[r]) {
      if (e.thread == core::TraceThread::NcclStreams)
        continue;  // communication on the GPU: in the trace for the eye, not the kernels' busy time
      else if (is_device_thread(e.thread))
        gpu_busy[r][e.step] += e.device_busy, any_gpu = true;
      else
        traces[r].push_back(e);
    }
  const sched::Schedule schedule = sched::make_schedule(shape.schedule, shape.pp, shape.microbatches_per_pipeline);
  const sched::Placement place = schedule.placement();

  const std::vector<StepMetrics> steady = steady_steps(metrics);
  std::vector<double> times, rates, syncs, cpus;
  for (const auto& r : steady) {
    times.push_back(r.step_time), rates.push_back(r.tokens_per_s), syncs.push_back(r.grad_sync);
    if (r.cpu_s > 0) cpus.push_back(r.cpu_s);
  }
  const double step_time = median(times);
  // The representative step: the steady step closest to the median step time, among the steps
  // the traces hold. A resumed run's metrics go back to its first start, its traces only to
  // this attempt's: a step of an earlier start would show an empty window.
  std::set<int> traced;
  for (const auto& t : traces)
    for (const auto& e : t) traced.insert(e.step);
  std::vector<StepMetrics> candidates;
  for (const auto& r : steady)
    if (traced.count(r.step)) candidates.push_back(r);
  if (candidates.empty())
    for (const auto& r : metrics)
      if (traced.count(r.step)) candidates.push_back(r);
  if (candidates.empty()) candidates = steady;
  const StepMetrics rep = *std::min_element(candidates.begin(), candidates.end(), [&](auto& a, auto& b) {
    return std::abs(a.step_time - step_time) < std::abs(b.step_time - step_time);
  });

  // Accounting of the representative step, and per-stage op costs over all steady steps.
  std::set<int> steady_set;
  for (const auto& r : steady) steady_set.insert(r.step);
  std::vector<RankStep> per_rank(world);
  OpCostSamples samples;
  for (int r = 0; r < world; ++r) {
    std::map<int, std::vector<TraceEvent>> by_step;
    for (const auto& e : traces[r]) by_step[e.step].push_back(e);
    per_rank[r] = account_step(by_step[rep.step]);
    const int pp_rank = r / shape.dp;
    for (int s : steady_set) sample_op_costs(by_step[s], schedule.ops[pp_rank], place, pp_rank, samples);
  }

  // Replay the schedule with those costs; point-to-point: the fastest send seen is latency +
  // transfer of one activation.
  sched::SimConfig sim;
  const double act_bytes = 4.0 * shape.micro_batch_size * shape.seq_len * shape.d_model;
  // A rank's measured sync is its whole tail after the engine — every direction's reduction and
  // the optimizer — so it goes after the rank's compute, once per rank: as a per-stage sync
  // DualPipe's two directions counted it twice, and one direction's could overlap compute.
  sim.stages = stage_costs(samples, place.num_stages(), act_bytes, 0);
  sim.rank_tail = median(syncs);
  const double p2p = std::isfinite(samples.fastest_send) ? samples.fastest_send : shape.comm_delay_us * 1e-6;
  sim.link_classes = {sched::LinkClass{p2p, 0}};
  sim.pipelines = shape.dp;
  sim.record_timeline = false;
  const sched::SimResult replay = sched::simulate(schedule, sim);
  // Ranks sharing cores take turns: all their CPU work, queued on the cores, then the sync.
  double cpu_all_ranks = world * median(cpus);
  if (cpus.empty())
    for (const auto& r : replay.rank_stats) cpu_all_ranks += r.busy;
  const bool shared_cores = shape.cores > 0 && world > shape.cores;
  const double queued_step = shared_cores ? cpu_all_ranks / shape.cores + median(syncs) : 0;
  const double predicted_step = std::max(replay.makespan, queued_step);

  Report out;
  out.title = "duet run report: " + name;
  out.source = "measured";
  char sub[256];
  std::snprintf(sub, sizeof sub, "%d ranks = PP %d x DP %d (EP %d), %s, %d micro-batches per pipeline; step %d shown",
                world, shape.pp, shape.dp, shape.ep, core::format_schedule_kind(schedule.kind).c_str(),
                schedule.microbatches, rep.step);
  out.subtitle = sub;
  double bubble = 0, exposed = 0, busy = 0, core_wait = 0, window = 0;
  for (const auto& r : per_rank) {
    out.bubble_per_rank.push_back(r.bubble);
    out.busy_per_rank.push_back(r.busy);
    out.exposed_comm_per_rank.push_back(r.exposed_comm);
    out.core_wait_per_rank.push_back(r.core_wait);
    bubble += r.bubble / world, exposed += r.exposed_comm / world, busy += r.busy / world;
    core_wait += r.core_wait / world, window += r.window / world;
  }
  const double tokens_per_step = (double)shape.global_batch * shape.seq_len;
  using F = ReportField;
  out.headline = {
      F::num("step_time_s", "step time (median of steady steps)", step_time, "s"),
      F::num("predicted_step_time_s", "simulator, with this run's measured op costs", predicted_step, "s"),
      F::num("predicted_over_measured", "predicted / measured step time", predicted_step / step_time),
      F::num("predicted_one_core_per_rank_s", "simulator alone (every rank on a core of its own)", replay.makespan,
             "s"),
      F::num("bubble_s", "bubble (mean per rank)", bubble, "s"),
      F::num("bubble_fraction", "bubble fraction", window > 0 ? bubble / window : 0),
      F::num("core_wait_s", "waiting for a core (mean per rank)", core_wait, "s"),
      F::num("core_wait_fraction", "waiting for a core, fraction", window > 0 ? core_wait / window : 0),
      F::num("exposed_comm_s", "exposed communication (mean per rank)", exposed, "s"),
      F::num("exposed_comm_fraction", "exposed communication fraction", window > 0 ? exposed / window : 0),
      F::num("tokens_per_step", "tokens per step", tokens_per_step),
      F::num("tokens_per_s", "tokens per second (median)", median(rates), "tokens/s"),
      F::num("steps_measured", "steady steps measured", (double)steady.size()),
  };
  out.breakdown = {{"compute", busy},
                   {"waiting for a core", core_wait},
                   {"exposed communication", exposed},
                   {"bubble", bubble},
                   {"gradient sync + optimizer", std::max(0.0, step_time - window)}};

  // Timeline: pipeline 0 (its pp ranks), the representative step.
  double origin = 1e300;
  for (int p = 0; p < shape.pp; ++p)
    for (const auto& e : traces[p * shape.dp])
      if (e.step == rep.step && e.thread != TraceThread::Progress) origin = std::min(origin, e.t0);
  for (int p = 0; p < shape.pp; ++p)
    for (const auto& e : traces[p * shape.dp]) {
      if (e.step != rep.step || e.thread == TraceThread::Progress) continue;
      if (e.cat != TraceCategory::Compute && e.t1 - e.t0 < 1e-4) continue;  // too thin to see
      out.timeline.push_back({p, timeline_kind(e), e.name, e.t0 - origin, e.t1 - origin});
    }
  out.timeline_title = "pipeline 0, measured";

  ReportTable costs{"measured op costs per stage (ms, medians of lone ops; F&B = pair cost used)",
                    {"stage", "F", "B", "I", "W", "F&B", "all-to-all in F", "all-to-all in B"},
                    {}};
  for (int s = 0; s < place.num_stages(); ++s) {
    const sched::StageCost& c = sim.stages[s];
    costs.rows.push_back({std::to_string(s), ms(c.f), ms(c.b), ms(c.i), ms(c.w), ms(c.fb), ms(c.f_a2a), ms(c.b_a2a)});
  }
  out.tables.push_back(costs);
  out.notes = {
      "Compute = some thread of the rank computing on a core; waiting for a core = the rank's threads runnable but "
      "not running (ranks sharing cores, or other processes), taken from the kernel's per-thread run-queue time; "
      "exposed communication = waiting on a transfer, an all-to-all or the gradient reduction while no thread "
      "computes, and not for a core; bubble = the rest of the step window.",
      "The prediction replays this run's schedule in the discrete-event simulator with per-stage op costs measured "
      "here, net of waiting for a core (medians of ops outside overlapped pairs; overlapped pairs scaled by their "
      "measured cost) and point-to-point latency = the fastest send observed."};
  const double core_wait_fraction = window > 0 ? core_wait / window : 0;
  if (!shared_cores && shape.cores > 0 && core_wait_fraction > 0.1) {
    char note[400];
    std::snprintf(note, sizeof note,
                  "Each rank had a core of its own, yet the ranks waited for one %.0f%% of the step: other "
                  "processes were using this machine's cores. The prediction, from op costs net of that, is "
                  "for the run alone on the machine.",
                  100 * core_wait_fraction);
    out.notes.push_back(note);
  }
  if (shared_cores) {
    char note[400];
    std::snprintf(note, sizeof note,
                  "This run had %d ranks on %d cores: the simulator gives each rank a core (%.3f s), so the "
                  "prediction is the larger of that and the CPU work of all ranks (%s) taking turns on the cores, "
                  "plus the gradient sync and optimizer (%.3f s). Other processes using the cores meanwhile are "
                  "not in it: the prediction is for the run alone on the machine.",
                  world, shape.cores, replay.makespan,
                  cpus.empty() ? "their replayed ops" : "the CPU time their executors used",
                  queued_step);
    out.notes.push_back(note);
  }
  if (any_gpu) {
    double most = 0;
    for (int r = 0; r < world; ++r) most = std::max(most, gpu_busy[r].count(rep.step) ? gpu_busy[r].at(rep.step) : 0.0);
    char note[256];
    std::snprintf(note, sizeof note,
                  "GPU: the busiest rank's kernels ran %.1f ms of step %d's %.1f ms (%.0f%%; CUDA events, the traces' "
                  "\"GPU\" thread).",
                  most * 1e3, rep.step, rep.step_time * 1e3, rep.step_time > 0 ? 100 * most / rep.step_time : 0.0);
    out.notes.push_back(note);
  }
  return out;
}

Report measured_report(const std::string& run_dir, const RunShape& shape) {
  const auto metrics = read_metrics(run_dir + "/metrics.jsonl");
  const int world = shape.pp * shape.dp;
  // One trace file per rank and attempt (io/run_records.h): the newest attempt's.
  auto trace_path = [&](int rank, int attempt) {
    char name[64];
    if (attempt <= 1)
      std::snprintf(name, sizeof name, "/trace/rank-%05d.json", rank);
    else
      std::snprintf(name, sizeof name, "/trace/rank-%05d.attempt-%d.json", rank, attempt);
    return run_dir + name;
  };
  int attempt = 1;
  while (fs::exists(trace_path(0, attempt + 1))) ++attempt;
  std::vector<std::vector<TraceEvent>> traces(world);
  std::vector<std::string> warnings;
  for (int r = 0; r < world; ++r) {
    const std::string path = trace_path(r, attempt);
    if (!fs::exists(path)) throw std::runtime_error("missing " + path + " (runs write traces with runtime.trace: true)");
    TraceFile t = read_trace_file(path);
    traces[r] = std::move(t.events);
    if (!t.warning.empty()) warnings.push_back(t.warning);
  }
  Report out = measured_report(fs::path(run_dir).filename().string(), shape, metrics, traces);
  for (auto& w : warnings) out.notes.push_back("Warning: " + w + ".");
  if (attempt > 1)
    out.notes.push_back("The traces are those of attempt " + std::to_string(attempt) +
                        " (the run was started " + std::to_string(attempt) + " times).");
  return out;
}

}  // namespace duet::report
