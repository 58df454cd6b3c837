#pragma once
// Every communicator a rank trains with, built once, in one place, from the pure topology
// (core/layout.h) and passed by argument to the engine, ZeRO, the checkpoints and the
// trainer — nobody else builds a group.
//
//   world          all ranks (losses, gradient norm, imbalance)
//   pipeline       the PP ranks of this data-parallel replica, ranked by pp_rank: the
//                  schedule's point-to-point activations and gradients
//   evaluation     the same members: validation forwards, never mixed with a step's traffic
//   expert_exchange[dir]  the expert-parallel group (ep > 1), one per direction so each
//                  direction's all-to-alls have their own order (F&B pairs interleave them)
//   stages[i]      for the i-th stage this rank holds, in stage order: its copies (data-parallel
//                  replicas, and DualPipe's mirror rank) and the copies of its experts — ZeRO-1
//                  reduces over these; one pair per stage, since a DualPipe pair finishes its
//                  two stages in opposite orders and collectives on one communicator must not
//   checkpoint     a duplicate of world for the checkpoint writer thread's agreement
//   snapshot       another, for the in-memory snapshot thread's exchange with its peer node
// With an NCCL data plane, pipeline, expert_exchange and the stage groups are NCCL
// communicators (GPU to GPU); the rest stay MPI.

#include <memory>
#include <vector>

#include "core/layout.h"
#include "runtime/comm.h"

namespace duet::runtime {

struct StageGroups {
  int dir = 0;    // the direction this rank runs the stage in
  int stage = 0;  // its index in its model copy
  std::unique_ptr<Communicator> copies;
  std::unique_ptr<Communicator> expert_copies;
};

struct ProcessGroups {
  core::Topology topology;
  core::RankCoords coords;
  std::unique_ptr<Communicator> world, pipeline, evaluation, checkpoint, snapshot;
  std::vector<std::unique_ptr<Communicator>> expert_exchange;  // per direction; empty when ep = 1
  std::vector<StageGroups> stages;                              // in stage order
  // The groups of the stage this rank runs in direction `dir`.
  StageGroups& stage_of_dir(int dir);
  // Communicator::set_trace on the groups the data plane carries (pipeline, expert exchange,
  // stage copies): on NCCL their operations get a trace row of their own; else a no-op.
  void set_data_plane_trace(io::TraceRecorder* trace);
};

// Collective over `world`. stages: the stage index this rank runs in each direction
// (scheduler/placement.h), so every member creates its stage groups in the same order.
// data_plane (runtime.data_plane: nccl): the groups that carry training data — pipeline,
// expert_exchange, each stage's copies and expert copies — are made over it from their
// control-plane group; world, evaluation, checkpoint and snapshot stay on the control plane
// (host memory, tagged messages, the supervisor's agreements).
ProcessGroups make_process_groups(std::unique_ptr<Communicator> world, const core::Topology& topology,
                                  core::ScheduleKind schedule, const std::vector<int>& stage_of_dir,
                                  const DataPlane& data_plane = {});

}  // namespace duet::runtime
