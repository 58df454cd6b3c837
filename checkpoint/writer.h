#pragma once
// Asynchronous checkpoint saves: the training thread blocks only for an in-memory snapshot of
// its slices; a background thread runs the whole save protocol (save_checkpoint: shard,
// agreement, rank 0's commit, agreement) for this rank.
//
//   ckpt::CheckpointWriter writer({.dir = ckpt_dir, .rank = rank, .layout = layout,
//                                  .all_agree = agree_on_ckpt_comm, .save = {.keep = 3, .log = log}});
//   writer.reserve(my_slices);                      // optional: allocate the snapshot up front
//   ... every checkpoint.every steps, after the optimizer step:
//   writer.save_async(step, my_slices, my_state);   // returns after the copy
//   ... each step (cheap):
//   if (auto r = writer.poll(); r && !r->committed) log(r->error);   // same verdict on every rank
//   ... at the end: writer.wait();
//
// With Snapshot::deferred the copy itself moves to the writer thread, so it overlaps the next
// step's forward and backward (which only read the parameters); the caller then calls
// wait_snapshot() before its next optimizer step changes them.
//
// all_agree is called from the writer's thread, twice per save, in the same order on every
// rank: with MPI it must be safe there (MPI_THREAD_MULTIPLE and a communicator of its own,
// so it cannot interleave with the training thread's collectives).

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "checkpoint/checkpoint.h"

namespace duet::ckpt {

// How save_async takes its snapshot.
enum class Snapshot {
  copy,      // copied before save_async returns: the caller may change its tensors at once
  deferred,  // copied by the writer thread: the caller must call wait_snapshot() before it
             // changes or frees any data it passed (e.g. right before the next optimizer step)
};

class CheckpointWriter {
 public:
  struct Options {
    std::string dir;  // checkpoint root
    int rank = 0;
    CheckpointLayout layout;
    AgreeFn all_agree;  // empty: a single process (always true)
    SaveOptions save;   // keep, log, fault injection
  };

  explicit CheckpointWriter(Options opt);
  ~CheckpointWriter();  // lets the save in flight finish, then stops; never throws
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Allocates (and touches) snapshot buffers for slices of these sizes, so that the first
  // save_async stalls only for the copy, not for page faults. Waits for a save in flight.
  void reserve(std::span<const TensorSlice> slices);

  // If the previous save is still writing, logs that this one waits and waits; then takes the
  // snapshot (see Snapshot) into buffers reused from one save to the next and hands it to the
  // writer thread. The result arrives through poll()/wait().
  void save_async(std::int64_t step, std::span<const TensorSlice> slices, const ShardState& state,
                  Snapshot mode = Snapshot::copy);

  // Blocks until the snapshot of the last save_async is taken (at once for Snapshot::copy).
  void wait_snapshot();

  // The same protocol on the calling thread, without copying (after any save in flight).
  SaveResult save(std::int64_t step, std::span<const TensorSlice> slices, const ShardState& state);

  // Results of finished async saves, oldest first, each returned once. poll() never blocks;
  // wait() first waits for the save in flight. nullopt: nothing left to report.
  std::optional<SaveResult> poll();
  std::optional<SaveResult> wait();

  bool busy() const;  // a save is being written

 private:
  void run();
  void wait_idle(std::unique_lock<std::mutex>& lk, std::int64_t next_step, double* waited);
  void take_snapshot();  // copies views_ (pointing at the caller's data) into values_

  Options opt_;
  std::vector<std::vector<float>> values_;  // the snapshot being (or last) written
  std::vector<TensorSlice> views_;          // its slices: the caller's data until the copy, then values_
  ShardRequest job_;
  double job_stall_ = 0, job_wait_ = 0;
  std::deque<SaveResult> results_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool has_job_ = false, in_flight_ = false, stop_ = false;
  bool copy_pending_ = false;  // deferred snapshot not yet taken
  std::int64_t in_flight_step_ = -1;
  std::thread thread_;
};

}  // namespace duet::ckpt
