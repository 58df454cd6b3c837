// report/accounting: interval arithmetic, and the busy / exposed-communication / bubble
// accounting and op costs of one rank's step, on hand-built traces with exact answers (every
// time a multiple of 1/4 s, so the doubles are exact).
#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "report/accounting.h"

namespace duet::report {
namespace {

using core::TraceCategory;
using core::TraceEvent;
using core::TraceOp;
using core::TraceOpRef;
using core::TraceThread;
using Intervals = std::vector<Interval>;

// ---- interval arithmetic ---------------------------------------------------------------------

TEST(Intervals, MergeSortsAndJoinsOverlappingAndTouching) {
  EXPECT_EQ(merged({{5, 6}, {0, 1}, {0.5, 2}}), (Intervals{{0, 2}, {5, 6}}));
  EXPECT_EQ(merged({{1, 2}, {0, 1}}), (Intervals{{0, 2}}));          // touching: one interval
  EXPECT_EQ(merged({{0, 10}, {2, 3}, {4, 5}}), (Intervals{{0, 10}}));  // nested
  EXPECT_EQ(merged({{3, 3}, {5, 4}}), Intervals{});                   // empty and reversed: dropped
  EXPECT_EQ(merged({}), Intervals{});
}

TEST(Intervals, LengthCountsOverlapsOnce) {
  EXPECT_EQ(length({}), 0);
  EXPECT_EQ(length({{0, 1}, {0.5, 1.5}, {3, 4}}), 2.5);
  EXPECT_EQ(length({{4, 5}, {0, 10}}), 10);    // nested, unsorted
  EXPECT_EQ(length({{2, 2}, {1, 0}}), 0);      // empty and reversed count nothing
  EXPECT_EQ(length({{0, 1}, {1, 2}}), 2);      // touching
}

TEST(Intervals, MinusCutsHolesAndEdges) {
  EXPECT_EQ(minus({{0, 10}}, {{2, 3}, {5, 6}}), (Intervals{{0, 2}, {3, 5}, {6, 10}}));  // nested holes
  EXPECT_EQ(minus({{0, 10}}, {{-1, 2}, {8, 12}}), (Intervals{{2, 8}}));                 // edges cut off
  EXPECT_EQ(minus({{0, 10}}, {{-1, 11}}), Intervals{});                                // covered
  EXPECT_EQ(minus({{0, 1}, {2, 3}}, {{1, 2}}), (Intervals{{0, 1}, {2, 3}}));             // touching: nothing lost
  EXPECT_EQ(minus({{0, 1}, {1, 2}}, {}), (Intervals{{0, 2}}));                          // a merged
  EXPECT_EQ(minus({}, {{0, 1}}), Intervals{});
  EXPECT_EQ(minus({{6, 8}, {0, 4}}, {{7, 9}, {1, 2}, {1.5, 3}}), (Intervals{{0, 1}, {3, 4}, {6, 7}}));  // unsorted
  EXPECT_EQ(minus({{0, 4}}, {{1, 1}, {3, 2}}), (Intervals{{0, 4}}));  // empty holes cut nothing
}

// ---- one rank's step, by hand ---------------------------------------------------------------------
//
// Rank 0 of a 2-rank DualPipe pipeline (direction 0 runs stage 0, direction 1 stage 1), one
// step, times in seconds. "|" marks computing, "~" waiting, "." neither:
//
//   compute thread   F0:0 |~||  wait ~~~.  F0:1 |~~|       wait gradient ~~~~~~  DP ~
//                    0   0.5 1  2   2.75 3  4  5  6        7               8.5   9
//   second executor                           I1:0 |~~|  (4..7: a2a 5..6)
//   deferred weight                                          W1:0 | (7..7.5), | (8..8.25)
//   progress         sends 1.5..9.5 and 2..2.25 (ignored by the accounting)
//
// F0:0 has an all-to-all nested at 0.5..1. The pair F0:1 & I1:0 hands the one baton over at
// each all-to-all: F computes 3..4, waits 4..5 while I computes, computes 5..6 while I waits;
// I computes again 6..7. I's weight pass was deferred and runs in two parts on the
// deferred-weight thread while the compute thread waits for a gradient.

TraceEvent op_event(TraceOp op, int dir, int mb, TraceThread thread, double t0, double t1) {
  const TraceOpRef ref{op, dir, mb};
  return {core::trace_op_name(ref), TraceCategory::Compute, thread, t0, t1, 3, ref};
}

TraceEvent event(std::string name, TraceCategory cat, TraceThread thread, double t0, double t1) {
  return {std::move(name), cat, thread, t0, t1, 3, {}};
}

std::vector<TraceEvent> hand_built_step() {
  const auto C = TraceThread::Compute, S = TraceThread::SecondExecutor, D = TraceThread::DeferredWeight,
             P = TraceThread::Progress;
  return {
      event("send to rank 1", TraceCategory::P2p, P, 1.5, 9.5),
      op_event(TraceOp::F, 0, 0, C, 0, 2),
      event("all-to-all dispatch", TraceCategory::All2all, C, 0.5, 1),
      event("send to rank 1", TraceCategory::P2p, P, 2, 2.25),
      event("wait activation 0:1", TraceCategory::Idle, C, 2, 2.75),
      op_event(TraceOp::F, 0, 1, C, 3, 6),
      event("all-to-all dispatch", TraceCategory::All2all, C, 4, 5),
      op_event(TraceOp::I, 1, 0, S, 4, 7),
      event("all-to-all combine", TraceCategory::All2all, S, 5, 6),
      event("wait gradient 0:1", TraceCategory::Idle, C, 7, 8.5),
      op_event(TraceOp::W, 1, 0, D, 7, 7.5),
      op_event(TraceOp::W, 1, 0, D, 8, 8.25),
      event("gradient reduce-scatter", TraceCategory::Dp, C, 8.5, 9),
  };
}

const TraceEvent& find(const std::vector<TraceEvent>& ev, TraceOpRef ref) {
  for (const auto& e : ev)
    if (e.op == ref) return e;
  throw std::logic_error("no event " + core::trace_op_name(ref));
}

TEST(Accounting, HandBuiltStep) {
  const RankStep r = account_step(hand_built_step());
  EXPECT_EQ(r.window, 9);  // 0..9: the progress thread's send to 9.5 is not the rank's window
  // Computing: 0..0.5, 1..2, 3..7.5 (F, then I, then the first weight part), 8..8.25.
  EXPECT_EQ(r.busy, 6.25);
  // Waiting with nothing computing: 0.5..1 (F0:0's all-to-all), 2..2.75, 7.5..8 and 8.25..9.
  // The pair's all-to-alls (4..6) hide behind the other half's compute.
  EXPECT_EQ(r.exposed_comm, 2.5);
  EXPECT_EQ(r.bubble, 0.25);  // 2.75..3
}

TEST(Accounting, EmptyStepIsZero) {
  const RankStep r = account_step({});
  EXPECT_EQ(r.window, 0);
  EXPECT_EQ(r.busy, 0);
  EXPECT_EQ(r.exposed_comm, 0);
  EXPECT_EQ(r.bubble, 0);
}

TEST(Accounting, OnlyProgressThreadSendsIsAnEmptyWindow) {
  const RankStep r = account_step({event("send", TraceCategory::P2p, TraceThread::Progress, 1, 2)});
  EXPECT_EQ(r.busy, 0);
  EXPECT_EQ(r.exposed_comm, 0);
}

TEST(Accounting, PureComputeOfOps) {
  const auto ev = hand_built_step();
  // A lone op: its span minus the all-to-all nested in it.
  EXPECT_EQ(pure_compute(find(ev, {TraceOp::F, 0, 0}), ev), 1.5);
  EXPECT_EQ(nested_all2all(find(ev, {TraceOp::F, 0, 0}), ev), 0.5);
  // The halves of the pair: each span minus its own wait minus the other half's turn.
  EXPECT_EQ(pure_compute(find(ev, {TraceOp::F, 0, 1}), ev), 2);  // 3..4, 5..6
  EXPECT_EQ(pure_compute(find(ev, {TraceOp::I, 1, 0}), ev), 2);  // 4..5, 6..7
  EXPECT_EQ(nested_all2all(find(ev, {TraceOp::I, 1, 0}), ev), 1);
  // The first weight part; the compute thread's wait meanwhile is not the part's.
  EXPECT_EQ(pure_compute(find(ev, {TraceOp::W, 1, 0}), ev), 0.5);
}

TEST(Accounting, OpCostsByStageWithThePairAndItsDeferredWeight) {
  const sched::Placement place(core::ScheduleKind::DualPipe, 2);
  ASSERT_EQ(place.stage_of(0, 0), 0);
  ASSERT_EQ(place.stage_of(0, 1), 1);
  // Rank 0's ops for this step: F0:0 alone, then the pair F0:1 & B1:0 (run as I1:0 + W1:0).
  const std::vector<sched::Op> ops = {{sched::OpKind::F, 0, 0}, {sched::OpKind::FB, 0, 1, 1, 0}};
  auto ev = hand_built_step();
  for (auto& e : ev) e.name = "renamed";  // the accounting goes by e.op, never by the name
  OpCostSamples s;
  sample_op_costs(ev, ops, place, 0, s);

  EXPECT_EQ(s.f, (std::map<int, std::vector<double>>{{0, {1.5}}}));  // the lone F0:0 only
  EXPECT_EQ(s.f_all2all, (std::map<int, std::vector<double>>{{0, {0.5}}}));
  EXPECT_TRUE(s.b.empty());
  EXPECT_TRUE(s.i.empty());  // I1:0 is half of the pair, not a lone op
  EXPECT_TRUE(s.b_all2all.empty());
  EXPECT_EQ(s.w, (std::map<int, std::vector<double>>{{1, {0.75}}}));  // both parts, stage of direction 1
  ASSERT_EQ(s.pairs.size(), 1u);
  EXPECT_EQ(s.pairs[0].stage_f, 0);
  EXPECT_EQ(s.pairs[0].stage_b, 1);
  EXPECT_EQ(s.pairs[0].compute, 2 + 2 + 0.75);  // both halves plus the deferred weight pass
  EXPECT_EQ(s.fastest_send, 0.25);

  // A second step adds to the same samples.
  sample_op_costs(ev, ops, place, 0, s);
  EXPECT_EQ(s.f.at(0).size(), 2u);
  EXPECT_EQ(s.pairs.size(), 2u);
}

TEST(Accounting, LoneBackwardAndPairWithFullBackward) {
  // Overlap off: the pair's backward half is a full B, nothing deferred; a lone B elsewhere.
  const sched::Placement place(core::ScheduleKind::DualPipe, 2);
  const auto C = TraceThread::Compute, S = TraceThread::SecondExecutor;
  const std::vector<TraceEvent> ev = {
      op_event(TraceOp::F, 0, 1, C, 0, 2),
      op_event(TraceOp::B, 1, 0, S, 1, 3),  // computes 2..3 after F; 1..2 is F's turn
      op_event(TraceOp::B, 0, 0, C, 3, 4),
      event("all-to-all combine", TraceCategory::All2all, C, 3.5, 3.75),
  };
  const std::vector<sched::Op> ops = {{sched::OpKind::FB, 0, 1, 1, 0}, {sched::OpKind::B, 0, 0}};
  OpCostSamples s;
  sample_op_costs(ev, ops, place, 0, s);
  EXPECT_EQ(s.b, (std::map<int, std::vector<double>>{{0, {0.75}}}));
  EXPECT_EQ(s.b_all2all, (std::map<int, std::vector<double>>{{0, {0.25}}}));
  ASSERT_EQ(s.pairs.size(), 1u);
  EXPECT_EQ(s.pairs[0].compute, 2);  // F: 0..2 less B's 1..2 = 1; B: 1..3 less F's 1..2 = 1
  EXPECT_TRUE(s.w.empty());
  EXPECT_EQ(s.fastest_send, std::numeric_limits<double>::infinity());  // no send seen
}

// ---- waiting for a core ----------------------------------------------------------------------

TraceEvent with_core_wait(TraceEvent e, double core_wait) {
  e.core_wait = core_wait;
  return e;
}

double parts_sum(const RankStep& r) { return r.busy + r.core_wait + r.exposed_comm + r.bubble; }

TEST(CoreWait, ComesOutOfComputeAndOutOfExposedCommunication) {
  const auto C = TraceThread::Compute;
  // F 0..4 waited 1 s for a core (a quarter of it), then a wait 4..6 that waited 0.5 s for
  // one (a quarter), nothing 6..7, a B 7..8 that never waited.
  const std::vector<TraceEvent> ev = {
      with_core_wait(op_event(TraceOp::F, 0, 0, C, 0, 4), 1),
      with_core_wait(event("wait gradient 0:0", TraceCategory::Idle, C, 4, 6), 0.5),
      op_event(TraceOp::B, 0, 0, C, 7, 8),
  };
  const RankStep r = account_step(ev);
  EXPECT_EQ(r.window, 8);
  EXPECT_EQ(r.busy, 3 + 1);          // F's 4 s less its 1 s, and B
  EXPECT_EQ(r.core_wait, 1 + 0.5);   // F's and the wait's
  EXPECT_EQ(r.exposed_comm, 1.5);    // the wait's 2 s less its 0.5 s
  EXPECT_EQ(r.bubble, 1);            // 6..7
  EXPECT_EQ(parts_sum(r), r.window);
  // Without the core waits the same step is the old split: busy 5, exposed 2.
  std::vector<TraceEvent> plain = ev;
  for (auto& e : plain) e.core_wait = 0;
  const RankStep p = account_step(plain);
  EXPECT_EQ(p.busy, 5);
  EXPECT_EQ(p.core_wait, 0);
  EXPECT_EQ(p.exposed_comm, 2);
}

TEST(CoreWait, OneThreadOnACoreIsEnoughToCompute) {
  // Two threads compute 1..2 at once; one of them spent all its span 0..2 on a run queue,
  // the other none of 1..2. 0..1 is all core wait; 1..2 the rank computes.
  const std::vector<TraceEvent> ev = {
      with_core_wait(op_event(TraceOp::F, 0, 0, TraceThread::Compute, 0, 2), 2),
      op_event(TraceOp::W, 1, 0, TraceThread::DeferredWeight, 1, 2),
  };
  const RankStep r = account_step(ev);
  EXPECT_EQ(r.core_wait, 1);
  EXPECT_EQ(r.busy, 1);
  EXPECT_EQ(r.exposed_comm, 0);
}

TEST(CoreWait, OverlappingWaitsCountTheLongestCoreWait) {
  // Two executors wait: 0..2 with a quarter of it on a run queue, 1..2 with half of it.
  // 0..1: 0.25 core wait; 1..2: the larger fraction, 0.5. Exposed: the rest of 0..2.
  const std::vector<TraceEvent> ev = {
      with_core_wait(event("wait activation 0:1", TraceCategory::Idle, TraceThread::Compute, 0, 2), 0.5),
      with_core_wait(event("all-to-all combine", TraceCategory::All2all, TraceThread::SecondExecutor, 1, 2), 0.5),
  };
  const RankStep r = account_step(ev);
  EXPECT_EQ(r.core_wait, 0.25 + 0.5);
  EXPECT_EQ(r.exposed_comm, 2 - 0.75);
  EXPECT_EQ(r.busy, 0);
  EXPECT_EQ(parts_sum(r), 2);
}

TEST(CoreWait, NestedWaitKeepsItsOwnCoreWait) {
  // F 0..4 with an all-to-all 1..3 nested in it. The trace gives each event its own core
  // wait, nested ones excluded: F 1 s over its 2 s of compute (0..1, 3..4), the all-to-all
  // 1 s over its 2 s.
  const auto C = TraceThread::Compute;
  const std::vector<TraceEvent> ev = {
      with_core_wait(op_event(TraceOp::F, 0, 0, C, 0, 4), 1),
      with_core_wait(event("all-to-all dispatch", TraceCategory::All2all, C, 1, 3), 1),
  };
  const RankStep r = account_step(ev);
  EXPECT_EQ(r.busy, 1);
  EXPECT_EQ(r.core_wait, 2);
  EXPECT_EQ(r.exposed_comm, 1);
  EXPECT_EQ(r.bubble, 0);
  // The op's cost for the replay: 4 s, less the all-to-all's 2 s, less its own 1 s on a run
  // queue; the all-to-all's: 2 s less its 1 s on a run queue.
  EXPECT_EQ(pure_compute(ev[0], ev), 1);
  EXPECT_EQ(nested_all2all(ev[0], ev), 1);
}

TEST(CoreWait, OpCostNeverBelowZero) {
  // A core wait larger than the span (clock granularity) gives a cost of 0, not negative.
  const auto e = with_core_wait(op_event(TraceOp::F, 0, 0, TraceThread::Compute, 0, 1), 1.25);
  EXPECT_EQ(pure_compute(e, {e}), 0);
  const RankStep r = account_step({e});
  EXPECT_EQ(r.core_wait, 1);  // a fraction of at most all of it
  EXPECT_EQ(r.busy, 0);
}

TEST(CoreWait, OpCostSamplesAreNetOfCoreWait) {
  // The hand-built step with F0:0 on a run queue for 0.5 s of its 1.5 s of compute and the
  // first weight part for 0.25 s: the lone F's sample and the pair's deferred weight shrink
  // by exactly that; the pair's halves do not change.
  const sched::Placement place(core::ScheduleKind::DualPipe, 2);
  const std::vector<sched::Op> ops = {{sched::OpKind::F, 0, 0}, {sched::OpKind::FB, 0, 1, 1, 0}};
  auto ev = hand_built_step();
  for (auto& e : ev) {
    if (e.op == TraceOpRef{TraceOp::F, 0, 0}) e.core_wait = 0.5;
    if (e.op == TraceOpRef{TraceOp::W, 1, 0} && e.t0 == 7) e.core_wait = 0.25;
  }
  OpCostSamples s;
  sample_op_costs(ev, ops, place, 0, s);
  EXPECT_EQ(s.f, (std::map<int, std::vector<double>>{{0, {1.0}}}));
  EXPECT_EQ(s.w, (std::map<int, std::vector<double>>{{1, {0.5}}}));
  ASSERT_EQ(s.pairs.size(), 1u);
  EXPECT_EQ(s.pairs[0].compute, 2 + 2 + 0.5);
}

}  // namespace
}  // namespace duet::report
