#pragma once
// Gradient synchronisation after the schedule's ops: every copy of a stage — the data-parallel
// replicas, and for DualPipe also the stage's second copy on rank N-1-r — ends the step with
// the sum of all their gradients (and of their experts' load), so all copies take the same
// optimizer step and stay bit-identical.

#include <vector>

#include "runtime/engine.h"
#include "runtime/mpi.h"
#include "runtime/topology.h"

namespace duet::runtime {

class GradSync {
 public:
  // Collective over COMM_WORLD (builds the stage-replica communicator).
  GradSync(const Topology& topo, int world_rank, const sched::Schedule& schedule);

  // Sums gradients and expert loads over the copies of each stage: dense tensors over every
  // copy, routed-expert tensors over the copies of the same experts.
  void reduce(std::vector<StageSlot>& slots, io::TraceRecorder* trace = nullptr);
  // Global gradient norm, each tensor counted once; the same value on every rank.
  double grad_norm(std::vector<StageSlot>& slots, MPI_Comm pipeline_comm, MPI_Comm expert_comm) const;
  // This rank's stage-copy group: world ranks holding a copy of this rank's stages.
  const std::vector<int>& replica_members() const { return members_; }

 private:
  std::vector<int> members_, expert_members_;
  Comm replicas_, expert_replicas_;
  bool two_copies_;  // DualPipe: stages exist once per direction
};

}  // namespace duet::runtime
