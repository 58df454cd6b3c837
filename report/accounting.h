#pragma once
// The run report's accounting: pure functions of one rank's trace events (core/trace_event.h)
// in one step. Nothing here reads a file or knows the run's config; measured.cpp feeds it.
//
// A rank's step, seen from its threads (TraceThread):
//   busy          some thread of the rank computing (an op's span minus the waits nested in it)
//                 and running on a core
//   core wait     the rank's threads runnable but not running: waiting for a core, because
//                 ranks share cores (more ranks than cores, or other processes). Comes out
//                 of the spans that would otherwise be busy or exposed communication.
//   exposed comm  a thread waiting on communication (a transfer, an all-to-all, the DP
//                 reduction) while no thread computes, and not for a core
//   bubble        the rest of the step's window: idle for lack of work
// The progress thread's sends overlap everything by design and are left out of all four.
//
// Where the core wait lies within an event is not recorded, only how much there was
// (TraceEvent::core_wait, this thread's, nested events excluded): it is taken as spread
// evenly over the event. In a stretch of the step where some thread computes, the rank
// waits for a core the least fraction any computing thread did (one thread on a core is
// enough to compute); in a stretch where threads only wait on communication, the largest
// fraction any of them did (a message that arrived is taken up only when its thread runs).
//
// Op costs come from the same events: an op's pure compute time is its span minus the
// communication nested in it, minus what other threads of the rank computed meanwhile
// (the executors of a rank pass one baton: while one computes, the other waits) and minus
// the time its thread waited for a core.

#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "core/trace_event.h"
#include "scheduler/schedule.h"

namespace duet::report {

// ---- interval arithmetic ---------------------------------------------------------------------

// [first, second) in seconds; an interval with second <= first is empty.
using Interval = std::pair<double, double>;

// Sorted by start, empty intervals dropped, overlapping or touching ones joined.
std::vector<Interval> merged(std::vector<Interval> v);
// Time covered by the union of v (any order, overlaps counted once).
double length(const std::vector<Interval>& v);
// The time in a that is not in b, as merged intervals (a and b in any order).
std::vector<Interval> minus(const std::vector<Interval>& a, const std::vector<Interval>& b);

// ---- one rank, one step ------------------------------------------------------------------------

// A thread waiting on communication: a wait for a transfer (Idle), an all-to-all, a DP reduction.
bool is_waiting(const core::TraceEvent& e);

// Per-rank accounting of one step (seconds); busy + core_wait + exposed_comm + bubble = window.
struct RankStep {
  double window = 0;        // first to last event of the step on this rank (progress thread aside)
  double busy = 0;          // some thread computing, on a core
  double core_wait = 0;     // computing or waiting on communication, but runnable and not running
  double exposed_comm = 0;  // waiting on communication while no thread computes, not for a core
  double bubble = 0;        // the rest: idle for lack of work
};

// `events`: one rank's events of one step (any order).
RankStep account_step(const std::vector<core::TraceEvent>& events);

// Compute time of the op event `op` among its step's `events`: its span minus the waits on
// its own thread, minus what other threads computed (outside their own waits) meanwhile and
// minus its own core wait (never below 0).
double pure_compute(const core::TraceEvent& op, const std::vector<core::TraceEvent>& events);
// All-to-all time nested in `op` on its own thread, less its core wait (never below 0).
double nested_all2all(const core::TraceEvent& op, const std::vector<core::TraceEvent>& events);

// ---- op costs over many steps ------------------------------------------------------------------

// An overlapped F&B pair (schedule op FB): its forward's stage, its backward's stage, and what
// the pair computed as a whole (both halves' pure compute plus, with the weight pass deferred,
// that weight pass wherever it ran).
struct PairSample {
  int stage_f = 0, stage_b = 0;
  double compute = 0;
};

// Samples collected over steps and ranks, by model stage (seconds).
struct OpCostSamples {
  // Lone ops (not halves of a pair): pure compute of F, B, I and of every deferred weight
  // pass (its parts summed), and the all-to-all nested in forwards and in backwards (B or I).
  std::map<int, std::vector<double>> f, b, i, w, f_all2all, b_all2all;
  std::vector<PairSample> pairs;
  double fastest_send = std::numeric_limits<double>::infinity();  // progress-thread sends
};

// Adds one step of one pipeline rank: `events` its events of the step, `rank_ops` its ops in
// the schedule (FB ops say which op events are halves of a pair), `place` maps its (rank,
// direction) to stages.
void sample_op_costs(const std::vector<core::TraceEvent>& events, const std::vector<sched::Op>& rank_ops,
                     const sched::Placement& place, int pp_rank, OpCostSamples& out);

}  // namespace duet::report
