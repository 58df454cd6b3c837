#pragma once
// In-memory snapshots of a training run (checkpoint.memory, docs/fault-tolerance.md): after
// every checkpoint.memory_every optimizer steps each rank writes what its HDF5 shard would
// hold into its node's shared memory (checkpoint/snapshot.h) and sends a replica to a rank
// on the next node, which writes it into its own node's folder. Open MPI kills every rank
// when one dies, so the copies live in files, outside the processes; a restart loses at most
// the step that was running.
//
//   MemorySnapshots snaps(cfg, topo, rank, log, *groups.snapshot, fence, supervised, stages, zero);
//   int step = snaps.find();            // -1: none; else load() it unless an HDF5 checkpoint is newer
//   ... each step, after the optimizer step:   snaps.save(step, stages, zero);
//   ... before the next optimizer step:         snaps.before_update();
//   ... at the end:                             snaps.finish(/*remove=*/true);
//
// A background thread encodes the state straight from the live tensors into this rank's slot
// file (mapped shared memory, rewritten in place: one pass, checksum included) while the next
// step's forward and backward run — they only read parameters, and the next optimizer step
// waits for it. The exchange with the peer follows on the same thread, over a communicator of
// its own, from one mapped slot file into the other node's.

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/fence.h"
#include "checkpoint/snapshot.h"
#include "core/layout.h"
#include "io/config.h"
#include "io/metrics.h"
#include "runtime/comm.h"
#include "runtime/stages.h"
#include "runtime/zero.h"

namespace duet::runtime {

// The folder the snapshots of all runs live under: checkpoint.memory_dir, else
// $DUET_MEMORY_DIR, else /dev/shm.
std::string memory_snapshot_dir(const io::RunConfig& cfg);
constexpr const char* kMemoryDirEnv = "DUET_MEMORY_DIR";

// How much one node needs: its ranks × two slots × (own snapshot + the replica it holds),
// each at most `largest_rank_bytes`.
std::uint64_t memory_snapshot_need(std::uint64_t largest_rank_bytes, int ranks_per_node);

class MemorySnapshots {
 public:
  // Collective over `comm` (a communicator of all ranks used for nothing else): agrees on
  // whether snapshots are on, from the real sizes of the ranks' state and the room on every
  // node. When checkpoint.memory is on and they cannot be kept (no lineage, no room), every rank
  // throws io::AgreedConfigError naming the key.
  MemorySnapshots(const io::RunConfig& cfg, const core::Topology& topo, int rank, io::RunLog& log, Communicator& comm,
                  ckpt::Fence fence, bool supervised, std::vector<RankStage>& stages, ZeroOptimizer& zero);
  ~MemorySnapshots();  // waits for the snapshot in flight; never throws
  MemorySnapshots(const MemorySnapshots&) = delete;
  MemorySnapshots& operator=(const MemorySnapshots&) = delete;

  bool enabled() const { return enabled_; }

  // Collective. Finds the newest step every rank of one layout has a verified snapshot of
  // (own copy or a peer's replica), written by an earlier attempt of this run: the first rank
  // of each node scans its node's folder, every rank receives every node's list and all
  // choose the same set. Returns the step, or -1 when there is none.
  int find();
  // Collective, after find() returned a step: loads it (into this layout, whatever layout
  // wrote it) and returns the step; a file on another node is sent by a rank of that node.
  // Rank 0 says so.
  int load(std::vector<RankStage>& stages, ZeroOptimizer& zero);
  // The data position (sequences) the snapshot load() read was saved at; -1 before one.
  int64_t data_position() const { return data_position_; }
  // The data position a snapshot of a step records (default: step × train.global_batch).
  void set_data_position(std::function<int64_t(int step)> f) { data_position_of_ = std::move(f); }
  // After the resume point is chosen (0: from scratch): the first rank of each node removes
  // from its node's folder the snapshots of earlier attempts of steps after `step` — a history
  // this attempt replaces, which a later restart must not choose. Not collective.
  void discard_newer_than(int step);
  // Every checkpoint.memory_every steps (others return at once): hands the state of `step`
  // to the background thread; waits first for the previous snapshot to be written and sent.
  // Returns the seconds it waited.
  double save(int step, std::vector<RankStage>& stages, ZeroOptimizer& zero);
  // Blocks until the copy of the last save() is taken; call before the optimizer changes
  // parameters or moments. Returns the seconds it blocked.
  double before_update();
  // Waits for the snapshot in flight. remove: the run is over (finished or stopped with its
  // checkpoint) — every rank's snapshots are deleted (collective), unless a newer attempt owns
  // the run (the fence moved on): then they are left to it.
  void finish(bool remove);

  // The newest finished snapshot of this rank: seconds from the hand-over to the replica
  // written (wall), and the CPU seconds the snapshot thread used for it (encode, checksum,
  // writes) — on a machine with one rank per core, that is what it takes from the compute.
  double last_wall_seconds() const { return last_wall_s_.load(); }
  double last_cpu_seconds() const { return last_cpu_s_.load(); }

  // Where this rank's node keeps its snapshots, and the run's folder above it.
  const std::string& node_dir() const { return node_dir_; }
  const std::string& run_dir() const { return run_dir_; }

 private:
  int64_t data_position_ = -1;
  std::function<int64_t(int)> data_position_of_;
  void run();  // the background thread
  // With mu_ held: waits until the snapshot in flight is done, at normal priority meanwhile.
  void wait_for_job(std::unique_lock<std::mutex>& lk);
  // SCHED_IDLE (only the core's idle time) or back to normal, for the snapshot thread.
  static void set_idle_priority(pthread_t thread, bool idle);
  void write_one(int step);

  io::RunConfig cfg_;
  int rank_, world_;
  io::RunLog& log_;
  Communicator& comm_;
  ckpt::Fence fence_;
  bool enabled_ = false;
  std::string run_dir_, node_dir_, node_;
  int per_node_ = 1, peer_to_ = -1, peer_from_ = -1;  // -1: no other node
  ckpt::SnapshotMeta meta_;
  ckpt::SnapshotSet found_;  // what find() chose
  std::optional<std::vector<ckpt::SnapshotCandidate>> scanned_;  // this node's folder, as find() found it
  std::unique_ptr<ckpt::SnapshotOwnerLock> owner_;

  std::vector<ckpt::TensorSlice> views_;  // the live state of the job (until the copy)
  ckpt::ShardState state_;
  // This rank's two slots and the two of the replica it keeps for peer_from_ (mapped files).
  std::unique_ptr<ckpt::SnapshotSlot> own_[2], replica_[2];
  std::vector<float> spill_;  // receives a replica when its slot cannot (the peer sends anyway)
  int job_step_ = -1, saves_ = 0;
  bool has_job_ = false, copying_ = false, stop_ = false, cleaned_ = false;
  std::string first_error_;
  std::atomic<double> last_wall_s_{0}, last_cpu_s_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace duet::runtime
