#include "runtime/grad_sync.h"

#include <algorithm>
#include <cmath>

#include "model/optimizer.h"

namespace duet::runtime {

GradSync::GradSync(const Topology& topo, int world_rank, const sched::Schedule& schedule)
    : two_copies_(schedule.kind == sched::ScheduleKind::DualPipe) {
  const auto c = topo.coords(world_rank);
  std::vector<int> pp_ranks = {c.pp_rank};
  if (two_copies_ && topo.pp() - 1 - c.pp_rank != c.pp_rank) pp_ranks.push_back(topo.pp() - 1 - c.pp_rank);
  for (int p : pp_ranks)
    for (int d = 0; d < topo.dp(); ++d) members_.push_back(topo.rank_of(p, d));
  std::sort(members_.begin(), members_.end());
  replicas_ = Comm::from_members(members_);
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

void GradSync::reduce(std::vector<StageSlot>& slots) {
  const bool alone = members_.size() == 1;
  for (StageSlot* s : by_stage(slots)) {
    auto g = s->arena->grads();
    if (!alone)
      MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, g.data(), (int)g.size(), MPI_FLOAT, MPI_SUM, replicas_.get()));
    auto load = s->stage_model->expert_load();
    std::vector<int64_t> sum(load.begin(), load.end());
    if (!alone && !sum.empty())
      MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sum.data(), (int)sum.size(), MPI_INT64_T, MPI_SUM, replicas_.get()));
    s->stage_model->reset_expert_load();
    s->reduced_load = std::move(sum);
  }
}

double GradSync::grad_norm(std::vector<StageSlot>& slots, MPI_Comm pipeline_comm) const {
  double ss = 0;
  for (auto& s : slots)
    if (!two_copies_ || s.pipeline == 0) ss += model::grad_sum_squares(*s.arena);
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &ss, 1, MPI_DOUBLE, MPI_SUM, pipeline_comm));
  return std::sqrt(ss);
}

}  // namespace duet::runtime
