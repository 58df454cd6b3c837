#include "core/layout.h"

#include <algorithm>
#include <stdexcept>

namespace duet::core {

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

RankGroups Topology::groups(int rank, ScheduleKind schedule) const {
  const RankCoords c = coords(rank);
  RankGroups g;
  for (int p = 0; p < pp_; ++p) g.pipeline.push_back(rank_of(p, c.dp_rank));
  for (int d = 0; d < dp_; ++d) g.data_parallel.push_back(rank_of(c.pp_rank, d));
  for (int e = 0; e < ep_; ++e) g.expert_parallel.push_back(rank_of(c.pp_rank, c.edp_rank * ep_ + e));
  for (int j = 0; j < dp_ / ep_; ++j) g.expert_data_parallel.push_back(rank_of(c.pp_rank, j * ep_ + c.ep_rank));
  std::vector<int> holders = {c.pp_rank};  // pipeline positions holding this rank's stages
  if (schedule == ScheduleKind::DualPipe && pp_ - 1 - c.pp_rank != c.pp_rank) holders.push_back(pp_ - 1 - c.pp_rank);
  for (int p : holders) {
    for (int d = 0; d < dp_; ++d) g.stage_copies.push_back(rank_of(p, d));
    for (int j = 0; j < dp_ / ep_; ++j) g.expert_copies.push_back(rank_of(p, j * ep_ + c.ep_rank));
  }
  std::sort(g.stage_copies.begin(), g.stage_copies.end());
  std::sort(g.expert_copies.begin(), g.expert_copies.end());
  return g;
}

std::string Topology::describe() const {
  return std::to_string(world_) + " ranks = PP " + std::to_string(pp_) + " x DP " + std::to_string(dp_) +
         " (EP " + std::to_string(ep_) + ")";
}

ScheduleKind effective_schedule(ScheduleKind configured, int pp) {
  return pp == 1 ? ScheduleKind::OneFOneB : configured;
}

std::string layout_violation(int world, const Layout& l, const LayoutRules& r) {
  const auto n = [](long long v) { return std::to_string(v); };
  if (l.pp < 1 || l.dp < 1 || l.ep < 1)
    return "parallel.pp, parallel.dp and parallel.ep must all be >= 1 (got " + n(l.pp) + ", " + n(l.dp) + ", " +
           n(l.ep) + ")";
  if ((long long)l.pp * l.dp != world)
    return "parallel.pp × parallel.dp (" + n(l.pp) + " × " + n(l.dp) + ") must equal the number of ranks (" +
           n(world) + ")";
  if (l.dp % l.ep != 0) return "parallel.ep (" + n(l.ep) + ") must divide parallel.dp (" + n(l.dp) + ")";
  if (r.experts % l.ep != 0)
    return "parallel.ep (" + n(l.ep) + ") must divide model.moe.experts (" + n(r.experts) + ")";
  const long long per = (long long)r.micro_batch_size * l.dp;
  if (per < 1 || r.global_batch % per != 0)
    return "train.global_batch (" + n(r.global_batch) + ") must be divisible by parallel.dp × train.micro_batch_size (" +
           n(l.dp) + " × " + n(r.micro_batch_size) + ")";
  const int C = (int)(r.global_batch / per);
  const ScheduleKind kind = effective_schedule(r.schedule, l.pp);
  const std::string why = schedule_rule_violation(kind, l.pp, C);
  if (!why.empty())
    return "layout pp " + n(l.pp) + " × dp " + n(l.dp) + " gives " + n(C) +
           " micro-batches per pipeline (global_batch / (micro_batch_size × dp)), which " +
           format_schedule_kind(kind) + " cannot run: " + why;
  return "";
}

int microbatches_per_pipeline(int world, const Layout& l, const LayoutRules& r) {
  const std::string why = layout_violation(world, l, r);
  if (!why.empty()) throw std::invalid_argument(why);
  return r.global_batch / (r.micro_batch_size * l.dp);
}

std::vector<Layout> valid_layouts(int world, const LayoutRules& rules) {
  std::vector<Layout> out;
  for (int pp = 1; pp <= world; ++pp) {
    if (world % pp != 0) continue;
    const int dp = world / pp;
    for (int ep = 1; ep <= dp; ++ep)
      if (layout_violation(world, {pp, dp, ep}, rules).empty()) out.push_back({pp, dp, ep});
  }
  return out;
}

}  // namespace duet::core
