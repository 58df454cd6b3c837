#include "runtime/run_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "io/config.h"
#include "io/trace.h"
#include "report/trace_reader.h"
#include "runtime/engine.h"
#include "scheduler/comm.h"
#include "scheduler/simulate.h"

namespace fs = std::filesystem;

namespace duet::runtime {

namespace {

using Interval = std::pair<double, double>;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::vector<Interval> merged(std::vector<Interval> v) {
  std::sort(v.begin(), v.end());
  std::vector<Interval> out;
  for (auto [a, b] : v) {
    if (b <= a) continue;
    if (!out.empty() && a <= out.back().second) out.back().second = std::max(out.back().second, b);
    else out.push_back({a, b});
  }
  return out;
}

double length(const std::vector<Interval>& v) {
  double s = 0;
  for (auto [a, b] : merged(v)) s += b - a;
  return s;
}

// a − b, both merged.
std::vector<Interval> minus(const std::vector<Interval>& a, const std::vector<Interval>& b) {
  std::vector<Interval> out;
  const auto B = merged(b);
  for (auto [lo, hi] : merged(a)) {
    double cur = lo;
    for (auto [c, d] : B) {
      if (d <= cur || c >= hi) continue;
      if (c > cur) out.push_back({cur, c});
      cur = std::max(cur, d);
    }
    if (cur < hi) out.push_back({cur, hi});
  }
  return out;
}

struct MetricsRow {
  int step = 0;
  double step_time = 0, tokens_per_s = 0, grad_sync = 0;
  bool eval = false;
};

std::vector<MetricsRow> read_metrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  auto num = [](const std::string& line, const char* key, double& out) {
    std::smatch m;
    if (std::regex_search(line, m, std::regex(std::string("\"") + key + "\":([-0-9.eE+]+)"))) out = std::stod(m[1]);
  };
  std::vector<MetricsRow> rows;
  for (std::string line; std::getline(in, line);) {
    MetricsRow r;
    double step = -1;
    num(line, "step", step);
    if (step < 0) continue;
    r.step = (int)step;
    num(line, "step_time_s", r.step_time);
    num(line, "tokens_per_s", r.tokens_per_s);
    num(line, "grad_sync_s", r.grad_sync);
    r.eval = line.find("\"val_loss\"") != std::string::npos;
    rows.push_back(r);
  }
  if (rows.empty()) throw std::runtime_error(path + " holds no steps");
  return rows;
}

bool is_comm(const io::TraceEvent& e) {
  return e.cat == io::TraceCategory::All2all || e.cat == io::TraceCategory::Idle || e.cat == io::TraceCategory::Dp;
}

// Compute time of an op event: its span minus the communication nested in it on its thread
// and minus what other threads computed meanwhile (one baton: while another thread of the
// rank computes, this op waits — e.g. the two halves of a pair, or deferred weight passes).
double pure_compute(const io::TraceEvent& op, const std::vector<io::TraceEvent>& events) {
  std::map<io::TraceThread, std::vector<Interval>> compute, comm;  // by thread, clipped to the op's span
  for (const auto& e : events) {
    if (e.t1 <= op.t0 || e.t0 >= op.t1 || e.thread == io::TraceThread::Progress) continue;  // the progress thread only sends
    const Interval clip{std::max(e.t0, op.t0), std::min(e.t1, op.t1)};
    if (is_comm(e)) comm[e.thread].push_back(clip);
    else if (e.cat == io::TraceCategory::Compute && e.thread != op.thread) compute[e.thread].push_back(clip);
  }
  std::vector<Interval> away = comm[op.thread];
  for (auto& [thread, iv] : compute)
    for (auto busy : minus(iv, comm[thread])) away.push_back(busy);
  return (op.t1 - op.t0) - length(away);
}

double nested_a2a(const io::TraceEvent& op, const std::vector<io::TraceEvent>& events) {
  std::vector<Interval> comm;
  for (const auto& e : events)
    if (e.thread == op.thread && e.cat == io::TraceCategory::All2all && e.t0 >= op.t0 && e.t1 <= op.t1)
      comm.push_back({e.t0, e.t1});
  return length(comm);
}

RankStep account(const std::vector<io::TraceEvent>& ev) {
  RankStep r;
  if (ev.empty()) return r;
  double t0 = 1e300, t1 = -1e300;
  std::vector<Interval> comm, compute;
  for (const auto& e : ev) {
    if (e.thread == io::TraceThread::Progress) continue;  // the progress thread's sends overlap everything by design
    t0 = std::min(t0, e.t0), t1 = std::max(t1, e.t1);
    if (is_comm(e)) comm.push_back({e.t0, e.t1});
  }
  for (const auto& e : ev)
    if (e.cat == io::TraceCategory::Compute) {
      std::vector<Interval> nested;
      for (const auto& c : ev)
        if (c.thread == e.thread && is_comm(c) && c.t0 >= e.t0 && c.t1 <= e.t1) nested.push_back({c.t0, c.t1});
      for (auto iv : minus({{e.t0, e.t1}}, nested)) compute.push_back(iv);
    }
  r.window = t1 - t0;
  r.busy = length(compute);
  r.exposed_comm = length(minus(comm, compute));
  r.bubble = std::max(0.0, r.window - r.busy - r.exposed_comm);
  return r;
}

}  // namespace

report::Report measured_report(const std::string& run_dir) {
  const io::RunConfig cfg = io::load_config(run_dir + "/config.yaml");
  const auto rows = read_metrics(run_dir + "/metrics.jsonl");
  const int world = cfg.parallel.pp * cfg.parallel.dp;
  std::vector<std::vector<io::TraceEvent>> traces(world);
  for (int r = 0; r < world; ++r) {
    char name[64];
    std::snprintf(name, sizeof name, "/trace/rank-%05d.json", r);
    const std::string path = run_dir + name;
    if (!fs::exists(path)) throw std::runtime_error("missing " + path + " (runs write traces with runtime.trace: true)");
    traces[r] = report::read_trace(path);
  }
  const sched::Schedule schedule =
      sched::make_schedule(schedule_for(cfg), cfg.parallel.pp, microbatches_per_pipeline(cfg));
  const sched::Placement place = schedule.placement();

  // Steady-state steps: skip the first two (allocation, warm-up) and evaluation steps.
  std::vector<MetricsRow> steady;
  for (const auto& r : rows)
    if ((r.step > 2 || rows.size() <= 2) && !r.eval) steady.push_back(r);
  if (steady.empty()) steady = rows;
  std::vector<double> times, rates, syncs;
  for (const auto& r : steady) times.push_back(r.step_time), rates.push_back(r.tokens_per_s), syncs.push_back(r.grad_sync);
  const double step_time = median(times);
  const MetricsRow rep = *std::min_element(steady.begin(), steady.end(), [&](auto& a, auto& b) {
    return std::abs(a.step_time - step_time) < std::abs(b.step_time - step_time);
  });

  // Measured accounting of the representative step, and per-stage op costs over all steady steps.
  std::set<int> steady_steps;
  for (const auto& r : steady) steady_steps.insert(r.step);
  std::vector<RankStep> per_rank(world);
  std::map<int, std::vector<double>> f, b, i, w, fa2a, ba2a;  // by stage
  struct PairSample {
    int stage_f, stage_b;
    double busy;
  };
  std::vector<PairSample> pairs;  // overlapped pairs: compute time of the pair as a whole
  double min_send = 1e300;
  for (int r = 0; r < world; ++r) {
    std::vector<io::TraceEvent> step_ev;
    std::map<int, std::vector<io::TraceEvent>> by_step;
    for (const auto& e : traces[r]) by_step[e.step].push_back(e);
    per_rank[r] = account(by_step[rep.step]);
    const int pp_rank = r / cfg.parallel.dp;
    // Halves of overlapped pairs are not lone ops: their spans include the other half's turns.
    std::set<std::string> paired;
    for (const auto& op : schedule.ops[pp_rank])
      if (op.kind == sched::OpKind::FB) {
        paired.insert(sched::format_op({sched::OpKind::F, op.dir, op.microbatch}));
        paired.insert(sched::format_op({sched::OpKind::B, op.dir2, op.microbatch2}));
        paired.insert(sched::format_op({sched::OpKind::I, op.dir2, op.microbatch2}));
      }
    for (int s : steady_steps) {
      const auto& ev = by_step[s];
      // A pair's cost is what its two halves computed (each half's span minus its own
      // communication and minus what the other executor computed meanwhile).
      std::map<std::string, const io::TraceEvent*> by_name;
      std::map<std::string, double> weight;  // a deferred weight pass runs in parts: sum them
      for (const auto& e : ev)
        if (e.cat == io::TraceCategory::Compute) {
          by_name[e.name] = &e;
          if (e.name[0] == 'W') weight[e.name] += pure_compute(e, ev);
        }
      for (const auto& op : schedule.ops[pp_rank]) {
        if (op.kind != sched::OpKind::FB) continue;
        const auto fi = by_name.find(sched::format_op({sched::OpKind::F, op.dir, op.microbatch}));
        auto bi = by_name.find(sched::format_op({sched::OpKind::B, op.dir2, op.microbatch2}));
        // With overlap on, the backward half is its input part; its weight part was deferred.
        if (bi == by_name.end()) bi = by_name.find(sched::format_op({sched::OpKind::I, op.dir2, op.microbatch2}));
        if (fi == by_name.end() || bi == by_name.end()) continue;
        const double busy = pure_compute(*fi->second, ev) + pure_compute(*bi->second, ev);
        // A deferred weight pass belongs to its pair's backward, wherever it ran.
        double deferred = 0;
        if (bi->first[0] == 'I') {
          const auto wi = weight.find(sched::format_op({sched::OpKind::W, op.dir2, op.microbatch2}));
          if (wi != weight.end()) deferred = wi->second;
        }
        pairs.push_back({place.stage_of(pp_rank, op.dir), place.stage_of(pp_rank, op.dir2), busy + deferred});
      }
      for (const auto& e : ev) {
        if (e.cat == io::TraceCategory::P2p && e.thread == io::TraceThread::Progress) min_send = std::min(min_send, e.t1 - e.t0);
        if (e.cat != io::TraceCategory::Compute) continue;
        if (e.name[0] == 'W' || paired.count(e.name)) continue;
        const int stage = place.stage_of(pp_rank, e.name[1] - '0');
        const double c = pure_compute(e, ev), a = nested_a2a(e, ev);
        switch (e.name[0]) {
          case 'F': f[stage].push_back(c), fa2a[stage].push_back(a); break;
          case 'B': b[stage].push_back(c), ba2a[stage].push_back(a); break;
          case 'I': i[stage].push_back(c), ba2a[stage].push_back(a); break;
        }
      }
      for (const auto& [name, c] : weight) w[place.stage_of(pp_rank, name[1] - '0')].push_back(c);
    }
  }

  // Replay the schedule with those costs.
  sched::SimConfig sim;
  sim.stages.clear();
  const double act_bytes = 4.0 * cfg.train.micro_batch_size * cfg.train.seq_len * cfg.model.d_model;
  for (int s = 0; s < place.num_stages(); ++s) {
    sched::StageCost c;
    c.f = median(f[s]);
    c.b = b[s].empty() ? median(i[s]) + median(w[s]) : median(b[s]);
    c.i = i[s].empty() ? c.b / 2 : median(i[s]);
    c.w = w[s].empty() ? c.b / 2 : median(w[s]);
    c.fb = c.f + c.b;  // scaled below by what pairs measured
    c.f_a2a = median(fa2a[s]), c.b_a2a = median(ba2a[s]);
    c.activation_bytes = c.gradient_bytes = act_bytes;
    c.dp_sync = median(syncs);
    sim.stages.push_back(c);
  }
  // Pairs: one CPU computes both halves in turn, and a pair costs more than its halves do
  // alone (a second thread, baton hand-overs, caches shared by two micro-batches). The
  // simulator prices a pair F_a & B_b as fb_a·f_a/(f_a+b_a) + fb_b·b_b/(f_b+b_b); with
  // fb = k·(f + b) for every stage that is k·(f_a + b_b), and k is the median measured ratio.
  if (!pairs.empty()) {
    std::vector<double> ratio;
    for (const auto& p : pairs) {
      const double lone = sim.stages[p.stage_f].f + sim.stages[p.stage_b].b;
      if (lone > 0) ratio.push_back(p.busy / lone);
    }
    const double k = ratio.empty() ? 1.0 : median(ratio);
    for (auto& c : sim.stages) c.fb = k * (c.f + c.b);
  }
  // Point-to-point: the fastest send seen is latency + transfer of one activation.
  const double p2p = min_send < 1e300 ? min_send : cfg.runtime.comm_delay_us * 1e-6;
  sim.link_classes = {sched::LinkClass{p2p, 0}};
  sim.pipelines = cfg.parallel.dp;
  sim.record_timeline = false;
  const sched::SimResult predicted = sched::simulate(schedule, sim);

  report::Report rep_out;
  rep_out.title = "duet run report: " + fs::path(run_dir).filename().string();
  rep_out.source = "measured";
  char sub[256];
  std::snprintf(sub, sizeof sub, "%d ranks = PP %d x DP %d (EP %d), %s, %d micro-batches per pipeline; step %d shown",
                world, cfg.parallel.pp, cfg.parallel.dp, cfg.parallel.ep,
                sched::format_schedule_kind(schedule.kind).c_str(), schedule.microbatches, rep.step);
  rep_out.subtitle = sub;
  double bubble = 0, exposed = 0, busy = 0, window = 0;
  for (const auto& r : per_rank) {
    rep_out.bubble_per_rank.push_back(r.bubble);
    rep_out.busy_per_rank.push_back(r.busy);
    rep_out.exposed_comm_per_rank.push_back(r.exposed_comm);
    bubble += r.bubble / world, exposed += r.exposed_comm / world, busy += r.busy / world, window += r.window / world;
  }
  const double tokens_per_step = (double)cfg.train.global_batch * cfg.train.seq_len;
  const double predicted_step = predicted.makespan;
  using F = report::ReportField;
  rep_out.headline = {
      F::num("step_time_s", "step time (median of steady steps)", step_time, "s"),
      F::num("predicted_step_time_s", "simulator, with this run's measured op costs", predicted_step, "s"),
      F::num("predicted_over_measured", "predicted / measured step time", predicted_step / step_time),
      F::num("bubble_s", "bubble (mean per rank)", bubble, "s"),
      F::num("bubble_fraction", "bubble fraction", window > 0 ? bubble / window : 0),
      F::num("exposed_comm_s", "exposed communication (mean per rank)", exposed, "s"),
      F::num("exposed_comm_fraction", "exposed communication fraction", window > 0 ? exposed / window : 0),
      F::num("tokens_per_step", "tokens per step", tokens_per_step),
      F::num("tokens_per_s", "tokens per second (median)", median(rates), "tokens/s"),
      F::num("steps_measured", "steady steps measured", (double)steady.size()),
  };
  rep_out.breakdown = {{"compute", busy}, {"exposed communication", exposed}, {"bubble", bubble},
                       {"gradient sync + optimizer", std::max(0.0, step_time - window)}};
  // Timeline: pipeline 0 (its pp ranks), the representative step.
  double origin = 1e300;
  for (int p = 0; p < cfg.parallel.pp; ++p)
    for (const auto& e : traces[p * cfg.parallel.dp])
      if (e.step == rep.step && e.thread != io::TraceThread::Progress) origin = std::min(origin, e.t0);
  for (int p = 0; p < cfg.parallel.pp; ++p)
    for (const auto& e : traces[p * cfg.parallel.dp]) {
      if (e.step != rep.step || e.thread == io::TraceThread::Progress) continue;
      std::string kind = e.cat == io::TraceCategory::Compute ? std::string(1, e.name[0])
                         : e.cat == io::TraceCategory::All2all ? "a2a"
                         : e.cat == io::TraceCategory::Dp      ? "dp"
                         : e.cat == io::TraceCategory::Idle    ? "idle"
                                                               : "p2p";
      if (e.cat != io::TraceCategory::Compute && e.t1 - e.t0 < 1e-4) continue;  // too thin to see
      rep_out.timeline.push_back({p, kind, e.name, e.t0 - origin, e.t1 - origin});
    }
  rep_out.timeline_title = "pipeline 0, measured";
  report::ReportTable costs{"measured op costs per stage (ms, medians of lone ops; F&B = pair cost used)",
                       {"stage", "F", "B", "I", "W", "F&B", "all-to-all in F", "all-to-all in B"}, {}};
  auto ms = [](double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", s * 1e3);
    return std::string(buf);
  };
  for (int s = 0; s < place.num_stages(); ++s)
    costs.rows.push_back({std::to_string(s), ms(sim.stages[s].f), ms(sim.stages[s].b), ms(sim.stages[s].i),
                          ms(sim.stages[s].w), ms(sim.stages[s].fb), ms(sim.stages[s].f_a2a), ms(sim.stages[s].b_a2a)});
  rep_out.tables.push_back(costs);
  rep_out.notes = {
      "Busy = some thread of the rank computing; exposed communication = waiting on a transfer, an all-to-all or the "
      "gradient reduction while no thread computes; bubble = the rest of the step window.",
      "The prediction replays this run's schedule in the discrete-event simulator with per-stage op costs measured "
      "here (medians of ops outside overlapped pairs; overlapped pairs scaled by their measured cost) and "
      "point-to-point latency = the fastest send observed.",
      "Ranks that share cores (more ranks than cores) stretch each other's op times; the measured costs include that."};
  const unsigned cores = std::thread::hardware_concurrency();
  if (cores > 0 && (unsigned)world > cores)
    rep_out.notes.push_back("This run had " + std::to_string(world) + " ranks on a " + std::to_string(cores) +
                            "-core machine: ranks waited for CPU time, which the trace shows as waiting and the "
                            "simulator (one core per rank) does not model, so the prediction is low. Compare "
                            "prediction and measurement on runs with at most one rank per core.");
  return rep_out;
}

}  // namespace duet::runtime
