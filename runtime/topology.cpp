#include "runtime/topology.h"

#include <stdexcept>

namespace duet::runtime {

Topology::Topology(int world, int pp, int dp, int ep) : world_(world), pp_(pp), dp_(dp), ep_(ep) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument("invalid layout (world " + std::to_string(world) + ", pp " +
                                std::to_string(pp) + ", dp " + std::to_string(dp) + ", ep " +
                                std::to_string(ep) + "): " + why);
  };
  if (world < 1 || pp < 1 || dp < 1 || ep < 1) fail("world size, pp, dp and ep must all be ≥ 1");
  if (pp * dp != world) fail("world size must equal pp × dp (" + std::to_string(pp * dp) + ")");
  if (dp % ep != 0) fail("ep must divide dp (experts are sharded inside a data-parallel group)");
}

RankCoords Topology::coords(int rank) const {
  if (rank < 0 || rank >= world_) throw std::out_of_range("Topology::coords: rank " + std::to_string(rank));
  RankCoords c;
  c.rank = rank;
  c.pp_rank = rank / dp_;
  c.dp_rank = rank % dp_;
  c.ep_rank = c.dp_rank % ep_;
  c.edp_rank = c.dp_rank / ep_;
  return c;
}

RankGroups Topology::groups(int rank) const {
  const RankCoords c = coords(rank);
  RankGroups g;
  for (int p = 0; p < pp_; ++p) g.pipeline.push_back(rank_of(p, c.dp_rank));
  for (int d = 0; d < dp_; ++d) g.data_parallel.push_back(rank_of(c.pp_rank, d));
  for (int e = 0; e < ep_; ++e) g.expert_parallel.push_back(rank_of(c.pp_rank, c.edp_rank * ep_ + e));
  for (int j = 0; j < dp_ / ep_; ++j) g.expert_data_parallel.push_back(rank_of(c.pp_rank, j * ep_ + c.ep_rank));
  return g;
}

std::string Topology::describe() const {
  return std::to_string(world_) + " ranks = PP " + std::to_string(pp_) + " x DP " + std::to_string(dp_) +
         " (EP " + std::to_string(ep_) + ")";
}

}  // namespace duet::runtime
