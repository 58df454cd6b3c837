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
// Each stage gets its own communicators: DualPipe's pair finishes its two stages in
// opposite orders, and collectives on one communicator must be issued in one order.

#include <memory>
#include <vector>

#include "io/trace.h"
#include "model/optimizer.h"
#include "runtime/engine.h"
#include "runtime/mpi.h"
#include "core/layout.h"

namespace duet::runtime {

class ZeroOptimizer {
 public:
  // Collective over COMM_WORLD. bucket_floats bounds one reduce-scatter.
  ZeroOptimizer(const core::Topology& topo, int world_rank, const sched::Schedule& schedule, std::vector<StageSlot>& slots,
                const model::OptimizerConfig& cfg, int64_t bucket_floats = 1 << 20);
  ~ZeroOptimizer();

  // Starts the reduce-scatter of slot i's gradients (its last backward op is done).
  void start_reduce(int slot);
  // Completes every reduction (starting those not started) and sums the experts' load over
  // each stage's copies into StageSlot::reduced_load. Returns the global gradient norm.
  double finish_reduce(io::TraceRecorder* trace);
  // Clip, AdamW on the owned shards, all-gather the parameters.
  void step(double lr, float clip_scale, io::TraceRecorder* trace);

  model::AdamW& adam(int slot) { return *state_[slot].adam; }

  // Optimizer-state floats this rank keeps (two moments per owned element).
  int64_t moment_floats() const;

 private:
  struct Bucket {
    int64_t begin, end;            // arena elements
    bool expert;
    MPI_Comm comm;                 // borrowed from the slot
    std::vector<int> counts, displs;  // per member, relative to begin
    int me;
    std::vector<float> shard;      // reduce-scatter result
    MPI_Request req = MPI_REQUEST_NULL;
  };
  struct SlotState {
    Comm dense, experts;           // this stage's copies; copies of its experts
    int dense_size, expert_size;
    std::vector<Bucket> buckets;
    std::unique_ptr<model::AdamW> adam;
    bool started = false;
  };

  std::vector<StageSlot>& slots_;
  std::vector<SlotState> state_;
  std::vector<int> stage_order_;  // slot indices by stage: the order of blocking collectives
};

}  // namespace duet::runtime
