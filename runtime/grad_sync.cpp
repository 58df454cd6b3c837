#include "runtime/grad_sync.h"

#include <algorithm>
#include <cmath>

#include "kernels/optim.h"
#include "model/optimizer.h"

namespace duet::runtime {

GradSync::GradSync(const Topology& topo, int world_rank, const sched::Schedule& schedule)
    : two_copies_(schedule.kind == sched::ScheduleKind::DualPipe) {
  const auto c = topo.coords(world_rank);
  std::vector<int> pp_ranks = {c.pp_rank};
  if (two_copies_ && topo.pp() - 1 - c.pp_rank != c.pp_rank) pp_ranks.push_back(topo.pp() - 1 - c.pp_rank);
  for (int p : pp_ranks) {
    for (int d = 0; d < topo.dp(); ++d) members_.push_back(topo.rank_of(p, d));
    for (int j = 0; j < topo.dp() / topo.ep(); ++j) expert_members_.push_back(topo.rank_of(p, j * topo.ep() + c.ep_rank));
  }
  std::sort(members_.begin(), members_.end());
  std::sort(expert_members_.begin(), expert_members_.end());
  replicas_ = Comm::from_members(members_);
  expert_replicas_ = Comm::from_members(expert_members_);
}

namespace {
// Slots in stage order: every member of a replica group holds the same stages, so walking
// them in stage order lines the collectives up.
std::vector<StageSlot*> by_stage(std::vector<StageSlot>& slots) {
  std::vector<StageSlot*> v;
  for (auto& s : slots) v.push_back(&s);
  std::sort(v.begin(), v.end(), [](auto* a, auto* b) { return a->stage < b->stage; });
  return v;
}
}  // namespace

void GradSync::reduce(std::vector<StageSlot>& slots, io::TraceRecorder* trace) {
  io::TraceScope event(trace, io::TraceCategory::Dp, "gradient all-reduce");
  const bool alone = members_.size() == 1;
  for (StageSlot* s : by_stage(slots)) {
    // Contiguous runs of dense or of expert tensors, each summed over its own replicas.
    const auto& specs = s->arena->specs();
    float* g = s->arena->grads().data();
    for (size_t i = 0; i < specs.size();) {
      const bool expert = specs[i].expert >= 0;
      size_t j = i;
      while (j < specs.size() && (specs[j].expert >= 0) == expert) ++j;
      const int64_t begin = specs[i].offset, end = specs[j - 1].offset + specs[j - 1].numel();
      const Comm& comm = expert ? expert_replicas_ : replicas_;
      if ((expert ? expert_members_ : members_).size() > 1)
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, g + begin, (int)(end - begin), MPI_FLOAT, MPI_SUM, comm.get()));
      i = j;
    }
    auto load = s->stage_model->expert_load();
    std::vector<int64_t> sum(load.begin(), load.end());
    if (!alone && !sum.empty())
      MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sum.data(), (int)sum.size(), MPI_INT64_T, MPI_SUM, replicas_.get()));
    s->stage_model->reset_expert_load();
    s->reduced_load = std::move(sum);
  }
}

double GradSync::grad_norm(std::vector<StageSlot>& slots, MPI_Comm pipeline_comm, MPI_Comm expert_comm) const {
  // Dense tensors are whole on every pipeline; routed experts are split over the
  // expert-parallel group, so their squares are summed over it first.
  double dense = 0, experts = 0;
  for (auto& s : slots) {
    if (two_copies_ && s.pipeline != 0) continue;
    for (const auto& spec : s.arena->specs()) {
      if (!spec.trainable()) continue;
      const double v = cpu::sum_squares(s.arena->grads().data() + spec.offset, spec.numel());
      (spec.expert >= 0 ? experts : dense) += v;
    }
  }
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &experts, 1, MPI_DOUBLE, MPI_SUM, expert_comm));
  double ss = dense + experts;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &ss, 1, MPI_DOUBLE, MPI_SUM, pipeline_comm));
  return std::sqrt(ss);
}

}  // namespace duet::runtime
