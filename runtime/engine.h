#pragma once
// The pipeline engine: runs this rank's op list from scheduler/ on real tensors.
//
// Each (rank, direction) slot holds one model stage (placement from the schedule). A step:
//   1. every receive of the step is posted up front (as early as the schedule allows), into
//      a buffer per (activation|gradient, direction, micro-batch);
//   2. ops run in schedule order: an op first waits for its inputs (time spent waiting is
//      the exposed communication), computes, then starts the sends of its outputs — or, when
//      the consumer is on this rank (DualPipeV's turn), copies them;
//   3. the step ends when every send has completed.
// With runtime.overlap (the default) sends go through a progress thread (SendQueue), and two
// executors take the ops in schedule order — an F&B pair as its two halves — passing one
// compute baton between them at every wait (runtime/progress.h); an op starts when an
// executor is free and its stage is idle (see run_overlapped). A backward's weight pass is deferred, a layer at a time, into a
// FIFO that fills communication waits (any thread that waits while the baton is free runs
// the next part) and is drained before the stage's gradients are reduced — FIFO order keeps
// every gradient sum, and so every loss, bit-identical to running it at once. With overlap
// off, every transfer is waited on as soon as it is issued and weight passes run in place:
// the baseline that shows what overlap hides.
// Gradients accumulate in the stages' arenas; synchronising them across stage copies and
// data-parallel replicas is the trainer's job (runtime/zero.h).

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "io/config.h"
#include "io/data.h"
#include "model/arena.h"
#include "model/config.h"
#include "model/stage.h"
#include "runtime/expert_exchange.h"
#include "runtime/mpi.h"
#include "runtime/progress.h"
#include "core/layout.h"
#include "runtime/train_setup.h"
#include "scheduler/schedule.h"

namespace duet::runtime {

// The configured layout's schedule and micro-batches per pipeline, by core/layout.h's rules
// (throws std::invalid_argument naming the broken rule).
sched::ScheduleKind schedule_for(const io::RunConfig& cfg);
int microbatches_per_pipeline(const io::RunConfig& cfg);

struct StepStats {
  double loss_sum = 0;     // Σ token losses computed on this rank (last stages only)
  double compute_s = 0;    // time in forward / backward / weight ops
  double wait_s = 0;       // time blocked on receives and on the final sends, summed over executors
  int executors = 1;       // threads that ran ops (2 with runtime.overlap)
  long messages = 0;       // point-to-point sends and all-to-alls this rank issued
};

// One stage this rank holds: its direction, place in the model, parameters and activations.
struct StageSlot {
  int dir = 0;
  int stage = 0;      // index in its pipeline
  int pipeline = 0;   // model copy (DualPipe has two)
  bool first = false, last = false;
  std::unique_ptr<model::ParamArena> arena;
  std::unique_ptr<model::Stage> stage_model;
  std::vector<model::StageActivations> acts;  // per micro-batch
  std::vector<int64_t> reduced_load;          // expert load summed over the stage's copies
};

class PipelineEngine {
 public:
  // pipeline_comm: this rank's pipeline group, ranked by pp_rank (the schedule's ranks);
  // expert_comm: its expert-parallel group, ranked by ep_rank.
  PipelineEngine(const io::RunConfig& cfg, const core::Topology& topo, int world_rank, MPI_Comm pipeline_comm,
                 MPI_Comm expert_comm, const io::TokenDataset& data);

  // Runs one training step (1-based) of the schedule. Parameter gradients accumulate.
  // slot_done(i) is called as soon as slot i's last backward op of the step has run (its
  // gradients are final), so their reduction can start while other ops still run.
  StepStats run_step(int step, const std::function<void(int)>& slot_done = {});

  // Σ token losses of validation sequences [first, first+count) pushed through pipeline 0,
  // on the rank holding its last stage (0 elsewhere).
  double eval_loss_sum(int first, int count);

  std::vector<StageSlot>& slots() { return slots_; }
  io::TraceRecorder* trace() { return trace_.get(); }
  const sched::Schedule& schedule() const { return schedule_; }
  double expert_exchange_seconds() const {
    double s = 0;
    for (auto& e : exchanges_) s += e->seconds();
    return s;
  }
  long expert_collectives() const {
    long n = 0;
    for (auto& e : exchanges_) n += e->collectives();
    return n;
  }
  int microbatches() const { return microbatches_; }

 private:
  enum Kind { kActivation = 0, kGradient = 1 };
  std::vector<float>& inbox(Kind k, int dir, int mb) { return inbox_[(k * dirs_ + dir) * mbpd_ + mb]; }
  int tag(Kind k, int to_dir, int mb) const { return (k * dirs_ + to_dir) * mbpd_ + mb; }
  void load_microbatch(int step, StageSlot& s, int mb);
  void run_op(const sched::Op& op, StepStats& st);  // an F&B pair sequentially (overlap off)
  void run_overlapped(const std::function<void(int)>& slot_done, StepStats& st);
  void forward(StageSlot& s, int mb, StepStats& st);
  void backward(StageSlot& s, int mb, bool input, bool weight, StepStats& st);
  void deliver(Kind k, const float* data, int from_dir, int mb);
  // Deferred weight passes (overlap on; touched only by the baton's holder).
  struct WeightPart {
    int dir, mb, part;
  };
  bool run_deferred_part();         // the oldest part; false when none is left
  void drain_deferred(int dir);     // until no part of `dir` is left (-1: all)
  void wait_input(Kind k, int dir, int mb, StepStats& st);
  StageSlot& slot(int dir) { return slots_[slot_index_[dir]]; }

  io::RunConfig cfg_;
  model::ModelConfig mcfg_;
  const io::TokenDataset& data_;
  MPI_Comm comm_;
  int pp_rank_, dp_rank_;
  sched::Schedule schedule_;
  int microbatches_, mbpd_, dirs_;
  int batch_, seq_len_;
  float loss_scale_;
  std::vector<std::unique_ptr<MpiExpertExchange>> exchanges_;  // per direction (ep > 1)
  std::vector<StageSlot> slots_;
  bool overlap_;
  int delay_us_;
  Baton baton_;
  std::unique_ptr<io::TraceRecorder> trace_;  // runtime.trace
  std::unique_ptr<SendQueue> sends_;  // overlap on
  std::vector<int> slot_index_;  // dir -> index in slots_
  std::vector<int> last_backward_op_;  // dir -> index of its last B/I/W op in this rank's list
  int stamp_ = 0;  // floats of send time after each message (runtime.comm_delay_us > 0)
  std::vector<std::vector<float>> inbox_, outbox_;  // outbox_: stamped copies of sends
  std::vector<MPI_Request> recv_req_;  // parallel to inbox_
  std::vector<MPI_Request> send_req_;
  std::vector<std::vector<int32_t>> tokens_, targets_;  // per (dir, mb) on first / last stages
  std::vector<int32_t> window_;
  std::deque<WeightPart> deferred_;
  double deferred_compute_s_ = 0;  // compute of deferred parts since the step began
  int step_ = 0;
  std::atomic<long> p2p_sends_{0};
};

}  // namespace duet::runtime
