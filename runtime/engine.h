#pragma once
// The pipeline engine: runs this rank's op list from scheduler/ on the stages the trainer
// hands it (runtime/stages.h), over the pipeline communicator.
//
// A step:
//   1. every receive of the step is posted up front (as early as the schedule allows), into
//      an inbox per (activation|gradient, direction, micro-batch);
//      over a communicator without tags (NCCL: p2p_matches_tags() false) each stream of
//      messages — (activation|gradient, receiving direction), split by the sender's rank
//      parity — gets its own duplicate, where a rank only sends or only receives, and the
//      receives are posted in the order the producing stage sends (its ops in schedule
//      order: the schedule is data both sides hold), so the n-th send meets the n-th receive;
//   2. ops run in schedule order: an op first waits for its inputs (time spent waiting is
//      the exposed communication), computes, then starts the sends of its outputs — or, when
//      the consumer is on this rank (DualPipeV's turn), copies them;
//   3. the step ends when every send has completed.
// With overlap on (runtime.overlap, the default) sends go through a progress thread
// (SendQueue), and two executors take the ops in schedule order — an F&B pair as its two
// halves — passing one compute baton between them at every wait (runtime/progress.h); an op
// starts when an executor is free and its stage is idle (see run_overlapped). A backward's
// weight pass is deferred, a layer at a time, into a FIFO that fills communication waits
// (any thread that waits while the baton is free runs the next part) and is drained before
// the stage's gradients are reduced — FIFO order keeps every gradient sum, and so every
// loss, bit-identical to running it at once. With overlap off, every transfer is waited on
// as soon as it is issued and weight passes run in place: the baseline that shows what
// overlap hides.
//
// The engine only runs ops: the trainer fills each stage's tokens and targets before a step
// (runtime/batches.h), synchronises gradients afterwards (runtime/zero.h), balances the
// experts (runtime/expert_balance.h) and evaluates (runtime/evaluation.h).

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "io/trace.h"
#include "kernels/buffer.h"
#include "runtime/comm.h"
#include "runtime/progress.h"
#include "runtime/stages.h"
#include "scheduler/schedule.h"

namespace duet::runtime {

struct StepStats {
  double loss_sum = 0;  // Σ token losses computed on this rank (last stages only)
  double wait_s = 0;    // time blocked on receives and on the final sends, summed over executors
  // Time the executors were runnable but not running (waiting for a core: ranks sharing
  // cores), over the whole step, summed over executors (io/core_wait.h). Part of it falls
  // inside wait_s (a message arrived while its thread waited for a core), part inside ops.
  double core_wait_s = 0;
  // CPU time the executors used during the step (summed): what the rank's ops and waits ask
  // of the cores it shares. (The progress thread's sends are not in it.)
  double cpu_s = 0;
  int executors = 1;    // threads that ran ops (2 with overlap)
  // The first micro-batch (in direction, then micro-batch order) whose loss came out
  // non-finite on this rank (last stages only).
  int nonfinite_dir = -1, nonfinite_mb = -1;
  long messages = 0;    // point-to-point sends and all-to-alls this rank issued
};

struct EngineOptions {
  bool overlap = true;    // runtime.overlap
  int comm_delay_us = 0;  // runtime.comm_delay_us: modelled latency of every message
  int batch = 1;          // sequences per micro-batch
  int seq_len = 1;
  float loss_scale = 1;   // 1 / tokens in the global batch
  // Called from the thread that ran it after each op of a step, with the number of ops done
  // so far in the step (progress for the supervisor's hang detection); may be empty.
  std::function<void(int ops_done)> op_done;
};

class PipelineEngine {
 public:
  ~PipelineEngine();
  // stages: indexed by direction (make_rank_stages); pipeline: this replica's pipeline
  // group, ranked by pp_rank (the schedule's ranks). baton: the rank's compute baton, also
  // given to its expert exchanges (used with overlap on). trace may be null.
  PipelineEngine(const sched::Schedule& schedule, int pp_rank, std::vector<RankStage>& stages, Communicator& pipeline,
                 const EngineOptions& options, Baton& baton, io::TraceRecorder* trace);

  // Runs one training step (1-based) of the schedule. Parameter gradients accumulate.
  // stage_done(dir) is called as soon as the stage of direction dir has run its last
  // backward op of the step (its gradients are final), so their reduction can start while
  // other ops still run.
  StepStats run_step(int step, const std::function<void(int dir)>& stage_done = {});

  const sched::Schedule& schedule() const { return schedule_; }
  // Fault injection (tests): the loss of micro-batch `mb` of the next step, on the first last
  // stage of this rank that computes it, comes out NaN.
  void poison_loss(int mb) { poison_mb_ = mb; }
  // Point-to-point messages sent so far.
  long messages_sent() const { return p2p_sends_; }

 private:
  std::atomic<int> poison_mb_{-1};
  enum Kind { kActivation = 0, kGradient = 1 };
  int box_index(Kind k, int dir, int mb) const { return (k * dirs_ + dir) * microbatches_per_dir_ + mb; }
  kernels::Buffer<float>& inbox(Kind k, int dir, int mb) { return inbox_[box_index(k, dir, mb)]; }
  void post_receives();
  // Tagless communicators: the duplicate carrying messages of kind k into direction `to_dir`
  // from a sender of rank `from_rank`.
  Communicator& channel(Kind k, int to_dir, int from_rank);
  int channel_index(Kind k, int to_dir, int from_rank) const;  // into channels_
  void connect_channels();  // tagless communicators: one message per link, before any step
  // The micro-batches whose kind-k message a stage sends, in the order it sends them.
  std::vector<int> send_order(Kind k, int rank, int dir) const;
  void run_op(const sched::Op& op, StepStats& st);  // an F&B pair sequentially (overlap off)
  void run_overlapped(const std::function<void(int)>& stage_done, StepStats& st);
  void forward(RankStage& s, int mb, StepStats& st);
  void backward(RankStage& s, int mb, bool input, bool weight, StepStats& st);
  void deliver(Kind k, const float* data, int from_dir, int mb);
  void wait_input(Kind k, int dir, int mb, StepStats& st);
  // Deferred weight passes (overlap on; touched only by the baton's holder).
  struct WeightPart {
    int dir, mb, part;
  };
  bool run_deferred_part();      // the oldest part; false when none is left
  void drain_deferred(int dir);  // until no part of `dir` is left (-1: all)

  sched::Schedule schedule_;
  sched::Placement placement_;
  int pp_rank_;
  std::vector<RankStage>& stages_;  // by direction
  Communicator& comm_;
  std::vector<std::unique_ptr<Communicator>> channels_;  // tagless comm_: by (kind, to_dir, parity)
  EngineOptions opt_;
  Baton& baton_;
  io::TraceRecorder* trace_;
  int microbatches_per_dir_, dirs_;
  // This step's loss per (direction, micro-batch), summed in that order at the step's end:
  // with overlap either executor may run a micro-batch's forward, and a sum in the order they
  // finish would change in its last bits from run to run.
  std::vector<double> mb_loss_;
  int activation_floats_;  // one micro-batch's activations (or their gradient): B·T·C
  int stamp_ = 0;          // floats of send time after each message (comm_delay_us > 0)
  // Sends ordered on the device (every channel orders sends by device work, the stages'
  // backend has marks, no stamp written by the host): during a step the stages' forward and
  // input backward end without waiting for their kernels (model::Stage::set_outputs_read_on_host).
  bool device_ordered_ = false;
  class SecondExecutor;
  std::unique_ptr<SecondExecutor> second_;  // overlap on: the other executor's thread
  std::unique_ptr<SendQueue> sends_;  // overlap on
  std::vector<int> last_backward_op_;  // dir -> index of its last B/I/W op in this rank's list
  std::vector<kernels::Buffer<float>> inbox_, outbox_;  // outbox_: stamped copies of sends
  std::vector<Request> recv_;                       // parallel to inbox_
  std::deque<WeightPart> deferred_;
  std::atomic<long> p2p_sends_{0};
  std::atomic<int> ops_done_{0};  // ops of the current step that have run
};

}  // namespace duet::runtime
