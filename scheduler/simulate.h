#pragma once
// The discrete-event simulator: times one training step of a schedule.
//
// Model. Each rank has one compute resource that runs its ops in schedule order, one
// outgoing link per peer it sends to, and one data-parallel (DP) communication resource.
// An op starts when the compute resource is free and every transfer it consumes has
// arrived. A transfer starts when the op that makes it ends and its link is free; it keeps
// the link busy for bytes / bandwidth and arrives `latency` later (so messages on one link
// queue behind each other, messages on different links overlap each other and compute).
// Sends never block the sender. All of overlap and waiting therefore comes out of the
// schedule; the only formula is inside an op (see StageCost::f_a2a).
//
// Every resource belongs to one rank and serves that rank's ops in program order, so
// processing ops in dependency order (each rank in order, a rank waiting for an input
// resumes when the input is made) gives the same times as a time-ordered event queue, at
// linear cost: O(ops + transfers), no priority queue.
//
// Several identical-shape pipelines (data-parallel replicas) can be simulated together:
// they share nothing but the DP gradient synchronisation at the end of the step, a
// collective per stage that starts when that stage is done in every pipeline. Per-rank
// compute_scale makes stragglers, whose delay then reaches every pipeline through DP.
#include <functional>
#include <string>
#include <vector>

#include "scheduler/schedule.h"

namespace duet::sched {

// Costs of one model stage. Times are in one unit of your choice (the same unit as link
// latency, and bytes / bandwidth).
struct StageCost {
  double f = 1, b = 2, i = 1, w = 1;  // compute of a forward, full backward, input-only backward, weight
  // Compute of an overlapped F&B pair when both halves are this stage's. A pair of two
  // stages (DualPipe's F0&B1) costs each half's share of its own stage's pair:
  // fb_a * f_a / (f_a + b_a) + fb_b * b_b / (f_b + b_b).
  double fb = 3;
  // Communication inside a chunk (e.g. MoE dispatch + combine all-to-all). A lone F takes
  // f + f_a2a (its communication is exposed); B and I add b_a2a; in an FB pair each half's
  // communication hides behind the other half's compute: the pair takes
  // max(pair compute, f_a2a + b_a2a).
  double f_a2a = 0, b_a2a = 0;
  // Point-to-point message sizes: the activation sent to the next stage and the gradient
  // sent back to the previous one.
  double activation_bytes = 0, gradient_bytes = 0;
  // Memory held per chunk from its F until its B or I, and from an I until its W.
  double activation_memory = 1, weight_grad_memory = 0;
  // Time to synchronise this stage's weight gradients over the DP replicas; it starts when
  // the stage's last B/W has run in every pipeline.
  double dp_sync = 0;
};

// The common case: stage costs from (F, B, W, F&B) with I = B - W and no communication.
StageCost stage_cost(double f, double b, double w, double fb);

struct LinkClass {
  double latency = 0;
  double bandwidth = 0;  // bytes per time unit; 0 = infinite
};

struct SimConfig {
  // One entry for every stage, or Placement::num_stages() entries (stage s of every
  // pipeline copy costs stages[s]).
  std::vector<StageCost> stages = {StageCost{}};
  std::vector<LinkClass> link_classes = {LinkClass{}};
  // Class of the link between two global ranks (pipeline * ranks + rank); empty: class 0.
  // Called once per (rank, peer) pair, not per message.
  std::function<int(int from_rank, int to_rank)> link_class;
  int pipelines = 1;
  std::vector<double> compute_scale;  // per global rank, multiplies compute times; empty: 1
  // Time every rank spends after its compute and its DP synchronisations, whatever its stages
  // (a measured run's post-engine tail: every direction's reduction and the optimizer, as one
  // figure per rank). Counted as exposed communication, like the syncs.
  double rank_tail = 0;
  bool record_timeline = true;
};

enum class EventKind { Compute, Activation, Gradient, DpSync };

struct Event {
  EventKind kind;
  int rank;        // global rank running it (the sender, for a transfer)
  int peer;        // transfers: the receiving global rank; otherwise -1
  int op_index;    // compute: index in the rank's op list; transfer: the op that made it; DpSync: -1
  int dir;         // transfer: sender's dir; DpSync: the stage's dir; compute: -1
  int microbatch;  // transfer: its micro-batch; otherwise -1
  double t0, t1;   // compute: start, end; transfer: start on the link, arrival; DpSync: start, end
  double t_split;  // compute of an FB pair: where its forward half ends when drawn; otherwise t1
};

struct RankStats {
  double busy = 0;          // compute time (communication inside ops excluded)
  double exposed_comm = 0;  // waiting on transfers in flight + exposed in-op communication + DP tail
  double bubble = 0;        // makespan - busy - exposed_comm: idle for lack of work
  double compute_end = 0;   // when its last op ends
  double finish = 0;        // when its DP synchronisation ends (>= compute_end)
  int peak_activations = 0; // chunks held between F and B/I, at most, as in the validator
  double peak_memory = 0;   // activation_memory and weight_grad_memory held, at most
};

struct SimResult {
  double makespan = 0;   // the latest finish over all ranks
  int ranks = 0;         // ranks per pipeline
  int pipelines = 0;
  std::vector<RankStats> rank_stats;  // by global rank = pipeline * ranks + rank
  std::vector<Event> events;          // if recorded; compute events of a rank in program order
};

// Simulates one step. Checks the schedule first (check_schedule) and the config
// (stage count, link classes, scale sizes); throws std::invalid_argument on either.
SimResult simulate(const Schedule& schedule, const SimConfig& config);

// {"makespan": ..., "bubble_per_rank": [...], "busy_per_rank": [...],
//  "exposed_comm_per_rank": [...], "peak_activations_per_rank": [...],
//  "peak_memory_per_rank": [...], "timeline": [...]?}
std::string sim_result_to_json(const SimResult& result, const Schedule& schedule, bool include_timeline);

}  // namespace duet::sched
