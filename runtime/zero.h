#pragma once
// ZeRO-1 data parallelism. Every copy of a stage — its data-parallel replicas, and for
// DualPipe the stage's second copy on rank N-1-r — forms one group; routed-expert tensors
// form smaller groups (the copies of the same experts). Per step:
//   1. as soon as a stage's last backward op on this rank is done, its gradients are
//      reduce-scattered over the group in buckets (non-blocking), so reduction overlaps the
//      rest of the schedule;
//   2. each rank owns one shard of every bucket: it alone keeps AdamW moments for it and
//      updates those parameters (optimizer memory / group size);
//   3. the updated shards are all-gathered, so every copy holds identical parameters.
// Each stage has its own communicators (ProcessGroups::stages): DualPipe's pair finishes its
// two stages in opposite orders, and collectives on one communicator must be issued in one
// order.

#include <memory>
#include <vector>

#include "io/trace.h"
#include "kernels/buffer.h"
#include "model/optimizer.h"
#include "runtime/comm.h"
#include "runtime/process_groups.h"
#include "runtime/stages.h"

namespace duet::runtime {

class ZeroOptimizer {
 public:
  // bucket_floats bounds one reduce-scatter. Keeps references to stages and groups.
  ZeroOptimizer(std::vector<RankStage>& stages, ProcessGroups& groups, const model::OptimizerConfig& cfg,
                int64_t bucket_floats = 1 << 20);

  // Starts the reduce-scatter of the gradients of the stage of direction `dir` (its last
  // backward op is done).
  void start_reduce(int dir);
  // Completes every reduction (starting those not started). Returns the global gradient norm.
  double finish_reduce(io::TraceRecorder* trace);
  // Clip, AdamW on the owned shards, all-gather the parameters.
  void step(double lr, float clip_scale, io::TraceRecorder* trace);

  model::AdamW& adam(int dir) { return *state_[dir].adam; }

  // Optimizer-state floats this rank keeps (two moments per owned element).
  int64_t moment_floats() const;

 private:
  struct Bucket {
    int64_t begin, end;               // arena elements
    Communicator* comm;               // the stage's copies, or the copies of its experts
    std::vector<int> counts, displs;  // per member, relative to begin
    int me;
    kernels::Buffer<float> shard;     // reduce-scatter result
    Request req;
  };
  struct StageState {
    std::vector<Bucket> buckets;
    std::unique_ptr<model::AdamW> adam;
    bool started = false;
  };

  std::vector<RankStage>& stages_;
  ProcessGroups& groups_;
  std::vector<StageState> state_;  // by direction
};

}  // namespace duet::runtime
