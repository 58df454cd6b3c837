// The discrete-event simulator: the README bubble formulas exactly, communication, memory,
// DP synchronisation and the timeline's consistency.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "scheduler/comm.h"
#include "scheduler/simulate.h"

namespace duet::sched {
namespace {

SimConfig unit_costs(double f = 1, double b = 2, double w = 1, double fb = 3) {
  SimConfig c;
  c.stages = {stage_cost(f, b, w, fb)};
  return c;
}

// With zero communication cost every rank of these schedules does the same work
// (M forwards and M full backwards' worth), so the bubble - makespan minus a rank's busy
// time - is the same on every rank; the test checks it on all of them.
void expect_bubble(ScheduleKind kind, int pp, int microbatches, double expected) {
  Schedule s = make_schedule(kind, pp, microbatches);
  SimResult r = simulate(s, unit_costs());
  ASSERT_EQ(static_cast<int>(r.rank_stats.size()), pp);
  for (int rank = 0; rank < pp; ++rank) {
    const RankStats& st = r.rank_stats[rank];
    EXPECT_DOUBLE_EQ(r.makespan - st.busy, expected)
        << format_schedule_kind(kind) << " PP=" << pp << " C=" << microbatches << " rank " << rank;
    EXPECT_DOUBLE_EQ(st.bubble, expected);
    EXPECT_DOUBLE_EQ(st.exposed_comm, 0);
  }
}

// (F, B, W, F&B) = (1, 2, 1, 3).
constexpr double F = 1, B = 2, W = 1, FB = 3;

TEST(SimulateBubble, OneFOneBIsPpMinusOneTimesFPlusB) {
  for (int pp : {4, 8, 16})
    for (int m : {pp, 2 * pp, 3 * pp + 1}) expect_bubble(ScheduleKind::OneFOneB, pp, m, (pp - 1) * (F + B));
}

TEST(SimulateBubble, ZB1PIsPpMinusOneTimesFPlusBMinusTwoW) {
  for (int pp : {4, 8, 16})
    for (int m : {pp, 2 * pp, 3 * pp + 1}) expect_bubble(ScheduleKind::ZB1P, pp, m, (pp - 1) * (F + B - 2 * W));
}

TEST(SimulateBubble, DualPipeIsHalfPpMinusOneTimesFBPlusBMinusThreeW) {
  for (int pp : {4, 8, 16})
    for (int c : {2 * pp, 2 * pp + 2, 4 * pp, 120})
      expect_bubble(ScheduleKind::DualPipe, pp, c, (pp / 2 - 1) * (FB + B - 3 * W));
}

TEST(SimulateBubble, DualPipeVWithPpStagesOnHalfTheRanks) {
  // PP stages on PP/2 ranks; the README gives DualPipeV the same bubble as DualPipe.
  for (int pp : {4, 8, 16})
    for (int c : {pp, pp + 1, 2 * pp, 60}) expect_bubble(ScheduleKind::DualPipeV, pp / 2, c, (pp / 2 - 1) * (FB + B - 3 * W));
}

TEST(SimulateBubble, OverlapShrinksDualPipeMakespan) {
  // A pair cheaper than F + B must shorten the step by (pairs on the critical path) x saving.
  Schedule s = make_dualpipe_schedule(8, 40);
  double slow = simulate(s, unit_costs(1, 2, 1, 3)).makespan;
  double fast = simulate(s, unit_costs(1, 2, 1, 2.5)).makespan;
  EXPECT_LT(fast, slow);
}

TEST(SimulateComm, LatencyIsExposedWhereTheScheduleWaits) {
  // 1F1B, 2 stages, 1 micro-batch: F(0) -> link -> F(1) B(1) -> link -> B(0).
  Schedule s = make_1f1b_schedule(2, 1);
  SimConfig c = unit_costs();
  c.link_classes = {{0.5, 0}};
  SimResult r = simulate(s, c);
  EXPECT_DOUBLE_EQ(r.makespan, 1 + 0.5 + 1 + 2 + 0.5 + 2);
  EXPECT_DOUBLE_EQ(r.rank_stats[1].exposed_comm, 0.5);  // waits for the activation in flight
  EXPECT_DOUBLE_EQ(r.rank_stats[0].exposed_comm, 0.5);  // waits for the gradient in flight
  EXPECT_DOUBLE_EQ(r.rank_stats[0].bubble, r.makespan - 3 - 0.5);
  for (const RankStats& st : r.rank_stats) EXPECT_NEAR(st.busy + st.exposed_comm + st.bubble, r.makespan, 1e-12);
}

TEST(SimulateComm, BandwidthQueuesMessagesOnALink) {
  // GPipe-like order on 2 stages: stage 0 sends 3 activations back to back; each takes
  // 2 time units on the link, so they arrive at 3, 5, 7 although made at 1, 2, 3.
  Schedule s{ScheduleKind::OneFOneB, 2, 3, {}};
  s.ops = {{{OpKind::F, 0, 0}, {OpKind::F, 0, 1}, {OpKind::F, 0, 2}, {OpKind::B, 0, 0}, {OpKind::B, 0, 1}, {OpKind::B, 0, 2}},
           {{OpKind::F, 0, 0}, {OpKind::F, 0, 1}, {OpKind::F, 0, 2}, {OpKind::B, 0, 0}, {OpKind::B, 0, 1}, {OpKind::B, 0, 2}}};
  SimConfig c = unit_costs();
  c.stages[0].activation_bytes = 10;
  c.link_classes = {{0, 5}};
  SimResult r = simulate(s, c);
  std::vector<double> arrivals;
  for (const Event& e : r.events)
    if (e.kind == EventKind::Activation) arrivals.push_back(e.t1);
  EXPECT_EQ(arrivals, (std::vector<double>{3, 5, 7}));
}

TEST(SimulateComm, LinkClassesComeFromTheCallback) {
  Schedule s = make_1f1b_schedule(4, 4);
  SimConfig c = unit_costs();
  c.link_classes = {{0, 0}, {10, 0}};  // only the 1 -> 2 boundary is slow
  c.link_class = [](int from, int to) { return std::min(from, to) == 1 && std::max(from, to) == 2 ? 1 : 0; };
  SimResult r = simulate(s, c);
  for (const Event& e : r.events) {
    if (e.kind == EventKind::Compute || e.kind == EventKind::DpSync) continue;
    bool slow = std::min(e.rank, e.peer) == 1 && std::max(e.rank, e.peer) == 2;
    EXPECT_DOUBLE_EQ(e.t1 - e.t0, slow ? 10 : 0);
  }
  c.link_class = [](int, int) { return 2; };
  EXPECT_THROW(simulate(s, c), std::invalid_argument);
}

TEST(SimulateComm, AllToAllInsidePairsHidesUpToThePairsCompute) {
  Schedule s = make_dualpipe_schedule(4, 16);
  SimConfig base = unit_costs();
  SimConfig hidden = base;
  hidden.stages[0].f_a2a = 1, hidden.stages[0].b_a2a = 1;  // 2 <= pair compute 3: hidden in pairs
  SimResult r0 = simulate(s, base), r1 = simulate(s, hidden);
  // Lone chunks pay their a2a; pairs do not. So the makespan grows by less than if every
  // op paid it, and exactly the lone chunks' a2a shows as exposed on each rank.
  for (int rank = 0; rank < 4; ++rank) {
    int lone = 0;
    for (const Op& op : s.ops[rank])
      if (op.kind == OpKind::F || op.kind == OpKind::B || op.kind == OpKind::I) ++lone;
    double exposed_in_ops = 0;
    for (const Event& e : r1.events)
      if (e.kind == EventKind::Compute && e.rank == rank) {
        const Op& op = s.ops[rank][e.op_index];
        double compute = op.kind == OpKind::F ? 1 : op.kind == OpKind::B ? 2 : op.kind == OpKind::I ? 1 : op.kind == OpKind::W ? 1 : 3;
        exposed_in_ops += (e.t1 - e.t0) - compute;
      }
    EXPECT_DOUBLE_EQ(exposed_in_ops, lone * 1.0) << "rank " << rank;
    EXPECT_DOUBLE_EQ(r1.rank_stats[rank].busy, r0.rank_stats[rank].busy);
  }
  SimConfig exposed = base;
  exposed.stages[0].f_a2a = 2.5, exposed.stages[0].b_a2a = 2.5;  // 5 > 3: pairs take 5
  SimResult r2 = simulate(s, exposed);
  for (const Event& e : r2.events)
    if (e.kind == EventKind::Compute && s.ops[e.rank][e.op_index].kind == OpKind::FB) {
      EXPECT_DOUBLE_EQ(e.t1 - e.t0, 5);
    }
}

TEST(SimulateMemory, PeakActivationsMatchTheValidatorAndMemoryScales) {
  Schedule s = make_dualpipe_schedule(8, 24);
  SimConfig c = unit_costs();
  c.stages[0].activation_memory = 2.5;
  SimResult r = simulate(s, c);
  for (const RankStats& st : r.rank_stats) {
    EXPECT_EQ(st.peak_activations, 9);
    EXPECT_DOUBLE_EQ(st.peak_memory, 9 * 2.5);
  }
  // Weight-gradient state held from I to W adds to the peak where I's wait for their W.
  Schedule z = make_zb1p_schedule(4, 8);
  SimConfig cz = unit_costs();
  cz.stages[0].activation_memory = 1, cz.stages[0].weight_grad_memory = 0.5;
  SimResult rz = simulate(z, cz);
  EXPECT_DOUBLE_EQ(rz.rank_stats[0].peak_memory, 4);          // W right after each I
  EXPECT_DOUBLE_EQ(rz.rank_stats[3].peak_memory, 1 + 3 * 0.5);  // three deferred W's
}

TEST(SimulateDp, SyncStartsWhenEveryPipelineIsDoneAndStragglersDelayAll) {
  Schedule s = make_1f1b_schedule(4, 8);
  SimConfig c = unit_costs();
  c.stages[0].dp_sync = 5;
  c.pipelines = 3;
  SimResult even = simulate(s, c);
  ASSERT_EQ(even.rank_stats.size(), 12u);
  double compute_only = simulate(s, unit_costs()).makespan;
  EXPECT_DOUBLE_EQ(even.makespan, compute_only + 5);  // stage 0 finishes last, then syncs
  c.compute_scale.assign(12, 1.0);
  c.compute_scale[1 * 4 + 2] = 1.5;  // pipeline 1, rank 2 is slow
  SimResult slow = simulate(s, c);
  EXPECT_GT(slow.makespan, even.makespan);
  // Every pipeline's rank 2 syncs with the straggler: they finish together.
  EXPECT_DOUBLE_EQ(slow.rank_stats[0 * 4 + 2].finish, slow.rank_stats[1 * 4 + 2].finish);
  EXPECT_GT(slow.rank_stats[0 * 4 + 2].exposed_comm, slow.rank_stats[1 * 4 + 2].exposed_comm);
}

TEST(SimulateDp, DualPipeSyncsBothStagesOfARankOneAfterTheOther) {
  Schedule s = make_dualpipe_schedule(4, 8);
  SimConfig c = unit_costs();
  c.stages[0].dp_sync = 2;
  SimResult r = simulate(s, c);
  std::map<int, std::vector<std::pair<double, double>>> syncs;
  for (const Event& e : r.events)
    if (e.kind == EventKind::DpSync) syncs[e.rank].push_back({e.t0, e.t1});
  ASSERT_EQ(syncs.size(), 4u);
  for (auto& [rank, v] : syncs) {
    ASSERT_EQ(v.size(), 2u);
    EXPECT_GE(v[1].first, v[0].second);
    EXPECT_DOUBLE_EQ(r.rank_stats[rank].finish, v[1].second);
  }
}

// A per-rank tail (a measured run's post-engine reduction and optimizer) comes after a rank's
// compute and syncs, once whatever the rank's directions, and counts as exposed communication.
TEST(SimulateDp, ARanksTailComesOnceAfterItsComputeAndSyncs) {
  for (auto kind : {ScheduleKind::OneFOneB, ScheduleKind::DualPipe}) {
    Schedule s = make_schedule(kind, 4, 8);
    const SimResult plain = simulate(s, unit_costs());
    SimConfig c = unit_costs();
    c.rank_tail = 3;
    const SimResult r = simulate(s, c);
    EXPECT_DOUBLE_EQ(r.makespan, plain.makespan + 3) << format_schedule_kind(kind);
    for (size_t g = 0; g < r.rank_stats.size(); ++g) {
      EXPECT_DOUBLE_EQ(r.rank_stats[g].finish, plain.rank_stats[g].finish + 3);
      EXPECT_DOUBLE_EQ(r.rank_stats[g].exposed_comm, plain.rank_stats[g].exposed_comm + 3);
    }
  }
}

TEST(SimulateTimeline, RespectsOrderResourcesAndDependencies) {
  for (auto kind : {ScheduleKind::OneFOneB, ScheduleKind::ZB1P, ScheduleKind::DualPipe, ScheduleKind::DualPipeV}) {
    Schedule s = make_schedule(kind, 4, 12);
    SimConfig c = unit_costs(1.3, 2.1, 0.7, 3.1);
    c.stages[0].activation_bytes = c.stages[0].gradient_bytes = 1;
    c.link_classes = {{0.25, 4}};
    SimResult r = simulate(s, c);
    const Placement p = s.placement();
    // When each (consumer rank, dir, gradient?, micro-batch) input arrived: transfer events,
    // or the producing op's end for a local turn.
    std::map<std::tuple<int, int, int, int>, double> arrival;
    std::map<int, std::vector<const Event*>> compute;
    for (const Event& e : r.events) {
      if (e.kind == EventKind::Compute) compute[e.rank].push_back(&e);
      if (e.kind != EventKind::Activation && e.kind != EventKind::Gradient) continue;
      bool grad = e.kind == EventKind::Gradient;
      Slot to = grad ? p.prev(e.rank, e.dir) : p.next(e.rank, e.dir);
      ASSERT_EQ(to.rank, e.peer);
      EXPECT_GE(e.t1 - e.t0, 0.25 + 0.25 - 1e-12);  // occupancy 1/4 plus latency
      arrival[{to.rank, to.dir, grad, e.microbatch}] = e.t1;
    }
    for (auto& [rank, evs] : compute) {
      ASSERT_EQ(evs.size(), s.ops[rank].size());
      for (size_t k = 0; k < evs.size(); ++k) {
        EXPECT_EQ(evs[k]->op_index, static_cast<int>(k));
        if (k > 0) {
          EXPECT_GE(evs[k]->t0, evs[k - 1]->t1 - 1e-12);
        }
        OpIo io = op_io(p, rank, s.ops[rank][k]);
        for (int i = 0; i < io.num_outputs; ++i) {
          const Transfer& t = io.outputs[i];
          if (t.local()) arrival[{t.to.rank, t.to.dir, t.kind == DataKind::Gradient, t.microbatch}] = evs[k]->t1;
        }
      }
    }
    for (auto& [rank, evs] : compute) {
      for (size_t k = 0; k < evs.size(); ++k) {
        OpIo io = op_io(p, rank, s.ops[rank][k]);
        for (int i = 0; i < io.num_inputs; ++i) {
          const Transfer& t = io.inputs[i];
          auto it = arrival.find({t.to.rank, t.to.dir, t.kind == DataKind::Gradient, t.microbatch});
          ASSERT_NE(it, arrival.end());
          EXPECT_GE(evs[k]->t0, it->second - 1e-9) << format_schedule_kind(kind) << " rank " << rank << " op " << k;
        }
      }
    }
  }
}

TEST(SimulateConfig, RejectsBadInput) {
  Schedule s = make_1f1b_schedule(4, 4);
  SimConfig c = unit_costs();
  c.stages.resize(3);
  EXPECT_THROW(simulate(s, c), std::invalid_argument);  // 3 stage costs for 4 stages
  c = unit_costs();
  c.stages[0].f = -1;
  EXPECT_THROW(simulate(s, c), std::invalid_argument);
  c = unit_costs();
  c.compute_scale = {1, 1};
  EXPECT_THROW(simulate(s, c), std::invalid_argument);
  EXPECT_THROW(stage_cost(1, 1, 2, 2), std::invalid_argument);  // W > B
  Schedule bad = make_1f1b_schedule(2, 2);
  std::swap(bad.ops[1][0], bad.ops[1][1]);
  EXPECT_THROW(simulate(bad, unit_costs()), std::invalid_argument);
}

TEST(SimulateConfig, PerStageCostsApplyToTheirStage) {
  Schedule s = make_1f1b_schedule(3, 1);
  SimConfig c;
  c.stages = {stage_cost(1, 2, 1, 3), stage_cost(5, 10, 5, 15), stage_cost(1, 2, 1, 3)};
  SimResult r = simulate(s, c);
  EXPECT_DOUBLE_EQ(r.makespan, 1 + 5 + 1 + 2 + 10 + 2);
  EXPECT_DOUBLE_EQ(r.rank_stats[1].busy, 15);
}

TEST(SimulateJson, HasTheSummaryFields) {
  Schedule s = make_dualpipe_schedule(4, 8);
  SimResult r = simulate(s, unit_costs());
  std::string j = sim_result_to_json(r, s, false);
  EXPECT_NE(j.find("\"makespan\": 26"), std::string::npos) << j;
  EXPECT_NE(j.find("\"bubble_per_rank\": [2, 2, 2, 2]"), std::string::npos) << j;
  EXPECT_EQ(j.find("timeline"), std::string::npos);
  std::string jt = sim_result_to_json(r, s, true);
  EXPECT_NE(jt.find("{\"kind\": \"compute\", \"rank\": 0, \"op\": \"F0:0\", \"index\": 0, \"t0\": 0, \"t1\": 1}"),
            std::string::npos);
}

}  // namespace
}  // namespace duet::sched
