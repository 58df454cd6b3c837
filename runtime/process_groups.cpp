#include "runtime/process_groups.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace duet::runtime {

StageGroups& ProcessGroups::stage_of_dir(int dir) {
  for (auto& s : stages)
    if (s.dir == dir) return s;
  throw std::logic_error("ProcessGroups: this rank runs no direction " + std::to_string(dir));
}

void ProcessGroups::set_data_plane_trace(io::TraceRecorder* trace) {
  if (pipeline) pipeline->set_trace(trace);
  for (auto& c : expert_exchange) c->set_trace(trace);
  for (auto& s : stages) {
    if (s.copies) s.copies->set_trace(trace);
    if (s.expert_copies) s.expert_copies->set_trace(trace);
  }
}

ProcessGroups make_process_groups(std::unique_ptr<Communicator> world, const core::Topology& topology,
                                  core::ScheduleKind schedule, const std::vector<int>& stage_of_dir,
                                  const DataPlane& data_plane) {
  ProcessGroups g{topology, topology.coords(world->rank()), std::move(world), {}, {}, {}, {}, {}, {}};
  const core::RankGroups members = topology.groups(g.coords.rank, schedule);
  g.pipeline = subgroup(*g.world, members.pipeline);
  g.evaluation = g.pipeline->dup();
  if (topology.ep() > 1) {
    auto experts = subgroup(*g.world, members.expert_parallel);
    for (size_t d = 0; d < stage_of_dir.size(); ++d) g.expert_exchange.push_back(experts->dup());
  }
  // Stage order: every holder of a stage holds the same stages, so the collective splits
  // over world line up.
  std::vector<int> dirs(stage_of_dir.size());
  for (size_t d = 0; d < dirs.size(); ++d) dirs[d] = (int)d;
  std::sort(dirs.begin(), dirs.end(), [&](int a, int b) { return stage_of_dir[a] < stage_of_dir[b]; });
  for (int d : dirs)
    g.stages.push_back({d, stage_of_dir[d], subgroup(*g.world, members.stage_copies),
                        subgroup(*g.world, members.expert_copies)});
  g.checkpoint = g.world->dup();
  g.snapshot = g.world->dup();
  if (data_plane) {  // every member of each group calls it at the same point: collective per group
    // NCCL connects ranks on first use, and a first use inside a step could wait in its call
    // (holding the compute baton) for a member that waits on this rank: each group is used
    // once here — a barrier for the collectives' connections, an all-to-all for the expert
    // exchange's point-to-point ones (the pipeline's: runtime/engine.h).
    auto connect_all_to_all = [](Communicator& c) {
      std::vector<int32_t> out(c.size(), 0), in(c.size());
      Request r = c.ialltoall(out.data(), in.data(), 1);
      wait(r);
    };
    g.pipeline = data_plane(*g.pipeline);
    for (auto& c : g.expert_exchange) {
      c = data_plane(*c);
      connect_all_to_all(*c);
    }
    for (auto& s : g.stages) {
      s.copies = data_plane(*s.copies);
      s.copies->barrier();
      s.expert_copies = data_plane(*s.expert_copies);
      s.expert_copies->barrier();
    }
  }
  return g;
}

}  // namespace duet::runtime
