#pragma once
// Checkpoints of a training run, over checkpoint/ (HDF5 shards, atomic commit): what each
// rank saves and how a run resumes — on the same layout or any other.
//
// Every rank saves the parameters of the stages it holds (whole tensors by name; copies of a
// stage on other ranks are identical replicas) and its ZeRO-1 shard of the AdamW moments
// (per tensor, as a 1-D slice "opt.m/<tensor>" of the flattened tensor). The step and the
// optimizer's step count go in the shard state; the data position follows from the step.
// Loading reads tensors and moment ranges by name, so the layout that reads need not be the
// layout that wrote.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/manifest.h"
#include "checkpoint/writer.h"
#include "core/layout.h"
#include "io/config.h"
#include "io/metrics.h"
#include "runtime/comm.h"
#include "runtime/stages.h"
#include "runtime/zero.h"

namespace duet::runtime {

// What a run adds to each save besides the state: its attempt's fence (checkpoint/fence.h),
// and fault injection at a save's events (tests: a rank killed while writing its shard of a
// step, or rank 0 killed inside the commit).
struct SaveHooks {
  ckpt::Fence fence;
  std::function<void(int step)> shard_written;                      // each rank, shard written, not closed
  std::function<void(int step, ckpt::CommitStage stage)> commit_stage;  // rank 0, each stage of its commit
  int unreadable_from = -1;  // this rank cannot read checkpoints of this step or newer on resume (-1: none)
};

class TrainCheckpoints {
 public:
  // agreement: a communicator of all ranks used for nothing else (ProcessGroups::checkpoint):
  // the writer thread's votes never interleave with the training thread's collectives.
  TrainCheckpoints(const io::RunConfig& cfg, const std::string& run_dir, const core::Topology& topo, int rank,
                   io::RunLog& log, Communicator& agreement, SaveHooks hooks = {});

  // Loads the newest committed checkpoint that every rank verifies into the stages and the
  // optimizer (a collective: the ranks agree on it). Returns its step, or 0 when there is none
  // (or checkpoint.resume is false); throws when some rank verified one and another rank none
  // (a run's checkpoints are not silently dropped for a read error on one rank). With
  // unless_at_most >= 0 (the step of an in-memory snapshot found) it loads nothing and returns
  // -1 when the newest checkpoint that verifies is not newer than that step.
  int resume(std::vector<RankStage>& stages, ZeroOptimizer& zero, int unless_at_most = -1);
  // The data position (sequences) the checkpoint resume() loaded was saved at; -1 before one.
  int64_t data_position() const { return data_position_; }
  // The data position a save of a step records (default: step × train.global_batch).
  void set_data_position(std::function<int64_t(int step)> f) { data_position_of_ = std::move(f); }
  // Saves `step` on every rank. Synchronous: returns whether it committed. With
  // checkpoint.async: returns after the in-memory snapshot (true), a background thread writes
  // and commits, and poll()/finish() report the verdict; a save still writing when the next
  // one starts makes the next one wait (and say so).
  bool save(int step, std::vector<RankStage>& stages, ZeroOptimizer& zero);
  // With checkpoint.async the snapshot is taken by the writer thread while the next step's
  // forward and backward run (they only read parameters): call this before anything changes
  // parameters or optimizer state (the optimizer step). Returns the seconds it blocked.
  double before_update();
  // Reports (logs) finished background saves; cheap, call once per step.
  void poll();
  // Waits for the save in flight and reports it; true if every save so far committed.
  bool finish();
  // After finish(): "" when the newest checkpoint this run asked for was committed (or none
  // was asked for); else why not, naming the step — the run must not exit as if it could
  // resume from there.
  std::string unsaved() const;
  // The newest step save() was called for (-1: none).
  int64_t last_requested() const { return last_requested_; }

  const std::string& dir() const { return dir_; }
  // Called with the step of every checkpoint that commits (a background save's when it is
  // reported), e.g. to tell the supervisor.
  void on_commit(std::function<void(int)> f) { on_commit_ = std::move(f); }

 private:
  int64_t data_position_ = -1;
  std::function<int64_t(int)> data_position_of_;
  io::RunConfig cfg_;
  std::string dir_;
  int rank_;
  ckpt::CheckpointLayout layout_;
  io::RunLog& log_;
  Communicator& agree_;
  std::unique_ptr<ckpt::CheckpointWriter> writer_;  // checkpoint.async
  bool all_committed_ = true;
  std::function<void(int)> on_commit_;
  SaveHooks hooks_;
  ckpt::SaveOptions save_options();
  std::map<int64_t, double> stalls_;  // async: seconds the training thread waited, per step
  int64_t last_async_step_ = -1;
  int64_t last_requested_ = -1, last_committed_ = -1;  // newest step save() was called for / committed
  std::string last_error_;                             // why the newest failed save failed
  void report(const ckpt::SaveResult& r);
  ckpt::ResumePoint agreed_resume_point();  // a collective
};

// What a rank saves, as checkpoint slices viewing its live state: every parameter tensor of
// its stages (whole) and its ZeRO-1 pieces of the AdamW moments ("opt.m/<tensor>",
// "opt.v/<tensor>", 1-D slices of the flattened tensor).
std::vector<ckpt::TensorSlice> rank_state_slices(std::vector<RankStage>& stages, ZeroOptimizer& zero);
// The same slices over host copies of their data, made with the compute backend's
// copy_to_host (which first waits for the kernels that wrote them); `storage` owns the copies.
std::vector<ckpt::TensorSlice> host_copies(const std::vector<ckpt::TensorSlice>& slices,
                                           std::vector<std::vector<float>>& storage);
// The state each rank's shard (or snapshot) carries besides the tensors; data_position: the
// sequences trained on when the step is done (runtime/batches.h).
ckpt::ShardState rank_shard_state(const io::RunConfig& cfg, int rank, int64_t data_position, ZeroOptimizer& zero);

// Loads a rank's state from any source that reads tensors by name: read_whole(name) returns
// the whole tensor, read_range(name, offset, out) elements [offset, offset + out.size()) of
// its flattened view. `where` names the source in errors.
// The optimizer's step count a shard's (or snapshot's) state recorded. Throws
// std::runtime_error naming `where` when it is missing or not a number.
long saved_optimizer_steps(const std::map<std::string, std::string>& attributes, const std::string& where);

void load_rank_state(std::vector<RankStage>& stages, ZeroOptimizer& zero, long optimizer_steps,
                     const std::function<std::vector<float>(const std::string&)>& read_whole,
                     const std::function<void(const std::string&, int64_t, std::span<float>)>& read_range,
                     const std::string& where);

// A digest of the model's shape (the model section of the config): checkpoints of another
// model are refused.
std::string model_hash(const io::RunConfig& cfg);

}  // namespace duet::runtime
