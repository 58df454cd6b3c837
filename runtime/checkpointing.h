#pragma once
// Checkpoints of a training run, over io/checkpoint (HDF5 shards, atomic commit): what each
// rank saves and how a run resumes — on the same layout or any other.
//
// Every rank saves the parameters of the stages it holds (whole tensors by name; copies of a
// stage on other ranks are identical replicas) and its ZeRO-1 shard of the AdamW moments
// (per tensor, as a 1-D slice "opt.m/<tensor>" of the flattened tensor). The step and the
// optimizer's step count go in the shard state; the data position follows from the step.
// Loading reads tensors and moment ranges by name, so the layout that reads need not be the
// layout that wrote.

#include <string>
#include <vector>

#include "io/checkpoint_manifest.h"
#include "io/config.h"
#include "io/metrics.h"
#include "runtime/engine.h"
#include "runtime/mpi.h"
#include "runtime/topology.h"
#include "runtime/zero.h"

namespace duet::runtime {

class TrainCheckpoints {
 public:
  // Collective over COMM_WORLD (duplicates it for the save protocol's agreement).
  TrainCheckpoints(const io::RunConfig& cfg, const std::string& run_dir, const Topology& topo, int rank,
                   io::RunLog& log);

  // Loads the newest committed checkpoint that verifies into the stages and the optimizer.
  // Returns its step, or 0 when there is none (or checkpoint.resume is false).
  int resume(std::vector<StageSlot>& slots, ZeroOptimizer& zero);
  // Saves `step` on every rank and commits it; false (logged) when it did not commit.
  bool save(int step, std::vector<StageSlot>& slots, ZeroOptimizer& zero);

  const std::string& dir() const { return dir_; }

 private:
  io::RunConfig cfg_;
  std::string dir_;
  int rank_;
  io::CheckpointLayout layout_;
  io::RunLog& log_;
  Comm agree_;
};

// A digest of the model's shape (the model section of the config): checkpoints of another
// model are refused.
std::string model_hash(const io::RunConfig& cfg);

}  // namespace duet::runtime
