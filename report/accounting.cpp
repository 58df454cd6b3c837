#include "report/accounting.h"

#include <algorithm>
#include <set>

namespace duet::report {

using core::TraceCategory;
using core::TraceEvent;
using core::TraceOp;
using core::TraceOpRef;
using core::TraceThread;

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

bool is_waiting(const TraceEvent& e) {
  return e.cat == TraceCategory::All2all || e.cat == TraceCategory::Idle || e.cat == TraceCategory::Dp;
}

namespace {

// One event's share of a stretch: its intervals, and the fraction of them its thread spent
// waiting for a core.
struct Spread {
  std::vector<Interval> at;
  double core_fraction = 0;
};

Spread spread(std::vector<Interval> at, double core_wait) {
  const double len = length(at);
  return {merged(std::move(at)), len > 0 ? std::min(1.0, core_wait / len) : 0.0};
}

bool covers(const std::vector<Interval>& v, double a, double b) {
  for (auto [lo, hi] : v)
    if (lo <= a && b <= hi) return true;
  return false;
}

}  // namespace

RankStep account_step(const std::vector<TraceEvent>& events) {
  RankStep r;
  if (events.empty()) return r;
  double t0 = 1e300, t1 = -1e300;
  std::vector<Spread> waits, computes;
  std::vector<double> cuts;
  for (const auto& e : events) {
    if (e.thread == TraceThread::Progress) continue;  // its sends overlap everything by design
    t0 = std::min(t0, e.t0), t1 = std::max(t1, e.t1);
    if (is_waiting(e)) waits.push_back(spread({{e.t0, e.t1}}, e.core_wait));
  }
  // An op computes over its span minus the waits nested in it on its own thread.
  for (const auto& e : events)
    if (e.cat == TraceCategory::Compute) {
      std::vector<Interval> nested;
      for (const auto& c : events)
        if (c.thread == e.thread && is_waiting(c) && c.t0 >= e.t0 && c.t1 <= e.t1) nested.push_back({c.t0, c.t1});
      computes.push_back(spread(minus({{e.t0, e.t1}}, nested), e.core_wait));
    }
  r.window = t1 - t0;
  // Walk the stretches between consecutive event boundaries: in each, the rank computes,
  // waits on communication, or neither (see the header for how core wait is apportioned).
  for (const auto* set : {&waits, &computes})
    for (const auto& s : *set)
      for (auto [a, b] : s.at) cuts.push_back(a), cuts.push_back(b);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  for (size_t k = 0; k + 1 < cuts.size(); ++k) {
    const double a = cuts[k], b = cuts[k + 1], len = b - a;
    double computing = 2, waiting = -1;  // fractions waiting for a core; 2 / -1: no such event
    for (const auto& c : computes)
      if (covers(c.at, a, b)) computing = std::min(computing, c.core_fraction);
    if (computing <= 1) {
      r.busy += len * (1 - computing), r.core_wait += len * computing;
      continue;
    }
    for (const auto& w : waits)
      if (covers(w.at, a, b)) waiting = std::max(waiting, w.core_fraction);
    if (waiting >= 0) r.exposed_comm += len * (1 - waiting), r.core_wait += len * waiting;
  }
  r.bubble = std::max(0.0, r.window - r.busy - r.core_wait - r.exposed_comm);
  return r;
}

double pure_compute(const TraceEvent& op, const std::vector<TraceEvent>& events) {
  std::map<TraceThread, std::vector<Interval>> compute, waiting;  // by thread, clipped to the op's span
  for (const auto& e : events) {
    if (e.t1 <= op.t0 || e.t0 >= op.t1 || e.thread == TraceThread::Progress) continue;  // the progress thread only sends
    const Interval clip{std::max(e.t0, op.t0), std::min(e.t1, op.t1)};
    if (is_waiting(e)) waiting[e.thread].push_back(clip);
    else if (e.cat == TraceCategory::Compute && e.thread != op.thread) compute[e.thread].push_back(clip);
  }
  std::vector<Interval> away = waiting[op.thread];
  for (auto& [thread, iv] : compute)
    for (auto busy : minus(iv, waiting[thread])) away.push_back(busy);
  return std::max(0.0, (op.t1 - op.t0) - length(away) - op.core_wait);
}

double nested_all2all(const TraceEvent& op, const std::vector<TraceEvent>& events) {
  std::vector<Interval> a2a;
  double core_wait = 0;
  for (const auto& e : events)
    if (e.thread == op.thread && e.cat == TraceCategory::All2all && e.t0 >= op.t0 && e.t1 <= op.t1)
      a2a.push_back({e.t0, e.t1}), core_wait += e.core_wait;
  return std::max(0.0, length(a2a) - core_wait);
}

void sample_op_costs(const std::vector<TraceEvent>& events, const std::vector<sched::Op>& rank_ops,
                     const sched::Placement& place, int pp_rank, OpCostSamples& out) {
  // Halves of overlapped pairs are not lone ops: their spans include the other half's turns.
  std::set<TraceOpRef> paired;
  for (const auto& op : rank_ops)
    if (op.kind == sched::OpKind::FB) {
      paired.insert({TraceOp::F, op.dir, op.microbatch});
      paired.insert({TraceOp::B, op.dir2, op.microbatch2});
      paired.insert({TraceOp::I, op.dir2, op.microbatch2});
    }
  std::map<TraceOpRef, const TraceEvent*> by_op;
  std::map<TraceOpRef, double> weight;  // a deferred weight pass runs in parts: sum them
  for (const auto& e : events)
    if (e.cat == TraceCategory::Compute && e.op.op != TraceOp::None) {
      by_op[e.op] = &e;
      if (e.op.op == TraceOp::W) weight[e.op] += pure_compute(e, events);
    }

  // A pair's cost is what its two halves computed (each half's span minus its own
  // communication and minus what the other executor computed meanwhile).
  for (const auto& op : rank_ops) {
    if (op.kind != sched::OpKind::FB) continue;
    const auto fi = by_op.find({TraceOp::F, op.dir, op.microbatch});
    auto bi = by_op.find({TraceOp::B, op.dir2, op.microbatch2});
    // With overlap on, the backward half is its input part; its weight part was deferred.
    if (bi == by_op.end()) bi = by_op.find({TraceOp::I, op.dir2, op.microbatch2});
    if (fi == by_op.end() || bi == by_op.end()) continue;
    const double compute = pure_compute(*fi->second, events) + pure_compute(*bi->second, events);
    // A deferred weight pass belongs to its pair's backward, wherever it ran.
    double deferred = 0;
    if (bi->first.op == TraceOp::I) {
      const auto wi = weight.find({TraceOp::W, op.dir2, op.microbatch2});
      if (wi != weight.end()) deferred = wi->second;
    }
    out.pairs.push_back({place.stage_of(pp_rank, op.dir), place.stage_of(pp_rank, op.dir2), compute + deferred});
  }

  for (const auto& e : events) {
    if (e.cat == TraceCategory::P2p && e.thread == TraceThread::Progress)
      out.fastest_send = std::min(out.fastest_send, e.t1 - e.t0);
    if (e.cat != TraceCategory::Compute || e.op.op == TraceOp::None) continue;
    if (e.op.op == TraceOp::W || paired.count(e.op)) continue;
    const int stage = place.stage_of(pp_rank, e.op.dir);
    const double c = pure_compute(e, events), a = nested_all2all(e, events);
    switch (e.op.op) {
      case TraceOp::F: out.f[stage].push_back(c), out.f_all2all[stage].push_back(a); break;
      case TraceOp::B: out.b[stage].push_back(c), out.b_all2all[stage].push_back(a); break;
      case TraceOp::I: out.i[stage].push_back(c), out.b_all2all[stage].push_back(a); break;
      case TraceOp::W:
      case TraceOp::None: break;
    }
  }
  for (const auto& [ref, c] : weight) out.w[place.stage_of(pp_rank, ref.dir)].push_back(c);
}

}  // namespace duet::report
