#pragma once
// The parallel layout as pure rules: which (pp, dp, ep) a job may use, and where every rank
// sits in it. No MPI here: the runtime builds its process groups from Topology, and the
// supervisor can pick a smaller layout with valid_layouts() without linking MPI.
//
// World = PP × DP, and EP divides DP: experts are sharded over the EP ranks of a
// data-parallel group and each expert is replicated DP/EP times. Ranks are numbered with
// the pipeline position outermost and the expert-parallel index innermost:
//
//     rank = pp_rank · DP + dp_rank,   dp_rank = edp_rank · EP + ep_rank
//
// so an expert-parallel group is EP consecutive ranks (one or a few nodes: all-to-all stays
// local where it can), and a pipeline's neighbours are DP ranks apart.
//
// Worked example, world 8 = PP 2 × DP 4, EP 2:
//     rank:      0 1 2 3 | 4 5 6 7
//     pp_rank:   0 0 0 0 | 1 1 1 1
//     dp_rank:   0 1 2 3 | 0 1 2 3
//     ep_rank:   0 1 0 1 | 0 1 0 1
//     pipeline of rank 1: {1, 5}      data-parallel group of rank 1: {0, 1, 2, 3}
//     expert-parallel group: {0, 1}   expert-data-parallel group (same experts): {1, 3}

#include <string>
#include <vector>

#include "core/schedule_kind.h"

namespace duet::core {

struct RankCoords {
  int rank = 0;
  int pp_rank = 0;   // position in its pipeline
  int dp_rank = 0;   // which pipeline replica
  int ep_rank = 0;   // position inside the expert-parallel group
  int edp_rank = 0;  // which replica of this rank's experts
};

struct RankGroups {
  std::vector<int> pipeline;         // PP ranks: same dp_rank, ordered by pp_rank
  std::vector<int> data_parallel;    // DP ranks: same pp_rank, ordered by dp_rank
  std::vector<int> expert_parallel;  // EP ranks: same pp_rank and edp_rank
  std::vector<int> expert_data_parallel;  // DP/EP ranks holding the same experts
  // Every rank holding a copy of this rank's stages, ascending: its data-parallel group, and
  // under DualPipe also that of its mirror pp-1-pp_rank (which holds the same two stages,
  // one per direction). Their gradients are reduced together (ZeRO-1).
  std::vector<int> stage_copies;
  std::vector<int> expert_copies;  // the same for this rank's routed experts
};

class Topology {
 public:
  // Throws std::invalid_argument naming the broken rule: world != pp·dp, ep ∤ dp, any < 1.
  Topology(int world, int pp, int dp, int ep);

  int world() const { return world_; }
  int pp() const { return pp_; }
  int dp() const { return dp_; }
  int ep() const { return ep_; }

  RankCoords coords(int rank) const;
  int rank_of(int pp_rank, int dp_rank) const { return pp_rank * dp_ + dp_rank; }
  RankGroups groups(int rank, ScheduleKind schedule = ScheduleKind::OneFOneB) const;
  std::string describe() const;  // "8 ranks = PP 4 x DP 2 (EP 2)"

 private:
  int world_, pp_, dp_, ep_;
};

struct Layout {
  int pp = 1, dp = 1, ep = 1;
  friend bool operator==(const Layout&, const Layout&) = default;
};

// What the run's config fixes that every layout must fit.
struct LayoutRules {
  ScheduleKind schedule = ScheduleKind::DualPipe;  // as configured (see effective_schedule)
  int global_batch = 1;      // sequences per step, over all replicas
  int micro_batch_size = 1;  // sequences per micro-batch
  int experts = 1;           // routed experts per MoE layer: ep must divide it
};

// The schedule a layout runs: the configured one, or 1F1B when pp is 1 (nothing to pipeline).
ScheduleKind effective_schedule(ScheduleKind configured, int pp);

// Micro-batches per pipeline replica: global_batch / (micro_batch_size · dp).
// The rule a layout breaks on `world` ranks, naming the config keys involved, or "" when it
// is valid: pp·dp = world, ep | dp, ep | experts, micro_batch_size·dp | global_batch, and the
// schedule's micro-batch rule (core/schedule_kind.h) for the micro-batches that gives.
std::string layout_violation(int world, const Layout& layout, const LayoutRules& rules);
// Micro-batches per pipeline replica; throws std::invalid_argument with layout_violation().
int microbatches_per_pipeline(int world, const Layout& layout, const LayoutRules& rules);

// Every valid layout on `world` ranks, by pp, then dp, then ep ascending.
std::vector<Layout> valid_layouts(int world, const LayoutRules& rules);

}  // namespace duet::core
