#pragma once
// Rank layout: a pure function from (world size, pp, dp, ep) to every rank's coordinates and
// the members of its groups. No MPI here; runtime/comm builds communicators from it.
//
// World = PP × DP, and EP divides DP: experts are sharded over the EP ranks of a
// data-parallel group and each expert is replicated DP/EP times. Ranks are numbered with
// the pipeline stage outermost and the expert-parallel index innermost:
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

namespace duet::runtime {

struct RankCoords {
  int rank = 0;
  int pp_rank = 0;   // pipeline position (which rank of its pipeline)
  int dp_rank = 0;   // which pipeline replica
  int ep_rank = 0;   // position inside the expert-parallel group
  int edp_rank = 0;  // which replica of this rank's experts
};

struct RankGroups {
  std::vector<int> pipeline;         // PP ranks: same dp_rank, ordered by pp_rank
  std::vector<int> data_parallel;    // DP ranks: same pp_rank, ordered by dp_rank
  std::vector<int> expert_parallel;  // EP ranks: same pp_rank and edp_rank
  std::vector<int> expert_data_parallel;  // DP/EP ranks holding the same experts
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
  RankGroups groups(int rank) const;
  std::string describe() const;  // "8 ranks = PP 4 × DP 2 (EP 2)"

 private:
  int world_, pp_, dp_, ep_;
};

}  // namespace duet::runtime
