#pragma once
// In-memory snapshots: a copy of each rank's training state after every step (or every
// checkpoint.memory_every steps), in node-local shared memory, so that a restart loses at
// most one step instead of everything since the last HDF5 checkpoint. docs/fault-tolerance.md
// describes the whole scheme; this file is the format, the files and the choice of a
// resume point — no MPI, no clocks.
//
// A snapshot of a rank holds exactly what its HDF5 shard would (the same TensorSlices and
// ShardState), in one flat file, so it loads into any layout by the same rules:
//
//   <memory dir>/duet-<lineage>/             one folder per run (lineage id)
//       owner.lock                           held (flock, shared) by every live process of the run
//       <node>/                              one folder per node (logical node on one machine)
//           rank-00003.slot0.snap            rank 3's state at an even snapshot index
//           rank-00003.slot1.snap            … at an odd one: two slots, so the newest complete
//                                            step survives a rank dying mid-write
//           rank-00007.slot1.snap            a replica another node's rank 7 sent here
//
// A slot file is created once, kept mapped and rewritten in place (SnapshotSlot): no new
// pages, no copy through write(). Its magic is cleared before the new snapshot goes in and
// written last, after the length and the checksum, while the attempt's fence is held
// (checkpoint/fence.h): a snapshot being written is never read (a rank that dies mid-write
// leaves a slot without magic; the other slot still holds the step before), and no rank of a
// superseded attempt can publish one. Each file carries lineage, step, attempt generation,
// layout, the writer's node and an XXH64 of everything after the header.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/fence.h"
#include "checkpoint/manifest.h"

namespace duet::ckpt {

struct SnapshotMeta {
  std::string lineage;          // the run's id: another run's snapshots are never loaded
  std::int64_t step = 0;        // the state after this optimizer step
  std::int64_t generation = 0;  // the writing attempt's fence generation
  int rank = 0;                 // the writer, 0 .. layout.world-1
  std::string node;             // the writer's node
  CheckpointLayout layout;      // world, pp, dp, ep, schedule, model_hash (the rest unused)
  bool operator==(const SnapshotMeta&) const = default;
};

// The bytes of one snapshot file: magic, payload length, XXH64 of the payload, payload.
constexpr std::size_t kSnapshotHeaderBytes = 24;
struct SnapshotHeader {
  std::uint64_t payload = 0;  // bytes after the header
  std::uint64_t xxh64 = 0;    // of those bytes
};
std::vector<std::byte> encode_snapshot(const SnapshotMeta& meta, std::span<const TensorSlice> slices,
                                       const ShardState& state);
// The size encode_snapshot would return, header included (without copying anything).
std::size_t encoded_snapshot_size(const SnapshotMeta& meta, std::span<const TensorSlice> slices,
                                  const ShardState& state);
// Writes the payload into `file` after the header's room (file holds encoded_snapshot_size
// bytes or more), hashing as it goes, and returns the header — not written, so the file is
// not a snapshot until put_snapshot_header.
SnapshotHeader encode_snapshot_payload(std::span<std::byte> file, const SnapshotMeta& meta,
                                       std::span<const TensorSlice> slices, const ShardState& state);
// Length and checksum, then the magic.
void put_snapshot_header(std::span<std::byte> file, const SnapshotHeader& header);

// One decoded snapshot; its slices point into `bytes`.
struct SnapshotSlice {
  std::string name;
  std::vector<std::int64_t> global_shape, offset, shape;
  std::size_t data = 0;  // byte offset of the first float in bytes
  std::int64_t count = 0;
};
struct SnapshotFile {
  SnapshotMeta meta;
  ShardState state;
  std::vector<SnapshotSlice> slices;
  std::vector<std::byte> bytes;
};

// Decodes and verifies (length, checksum, structure). nullopt with *why set when the bytes
// are not a whole, intact snapshot.
std::optional<SnapshotFile> decode_snapshot(std::vector<std::byte> bytes, std::string* why = nullptr);
std::optional<SnapshotFile> read_snapshot(const std::string& path, std::string* why = nullptr);

// ---- paths -------------------------------------------------------------------------------
std::string snapshot_run_dir(const std::string& memory_dir, const std::string& lineage);   // …/duet-<lineage>
std::string snapshot_file_name(int rank, int slot);                                        // rank-00003.slot1.snap
int snapshot_slot(std::int64_t step, int every);                                           // (step / every) % 2

// One slot file (<node dir>/rank-…slotK.snap), mapped while it is in use and rewritten in
// place from one snapshot to the next — on tmpfs that keeps its pages, so a snapshot costs one
// pass over the state:
//
//   auto file = slot.open_for(bytes, fence);                   // magic cleared: not a snapshot
//   slot.publish(encode_snapshot_payload(file, meta, slices, state), fence);
//
// A peer's replica is received straight into the mapping (its header comes separately and
// is published when the bytes are in).
// The size of a slot file holding a snapshot of `bytes` (room to grow, whole pages): what a
// node's memory must hold per slot.
std::size_t snapshot_slot_bytes(std::size_t bytes);

class SnapshotSlot {
 public:
  explicit SnapshotSlot(std::string path) : path_(std::move(path)) {}
  ~SnapshotSlot();
  SnapshotSlot(const SnapshotSlot&) = delete;
  SnapshotSlot& operator=(const SnapshotSlot&) = delete;

  // Creates or reuses the file, makes it hold at least `bytes` (every page reserved: a full
  // tmpfs is an exception here, not a SIGBUS later), clears the magic and returns the whole
  // mapping. Throws std::runtime_error naming the file.
  // Checks the fence first (when fence.generation > 0): a superseded attempt's rank throws
  // ("fenced: …") before touching the file.
  std::span<std::byte> open_for(std::size_t bytes, const Fence& fence);
  // Writes the header, magic last, holding the fence's shared lock (when fence.generation > 0):
  // throws ("fenced: …") for a superseded attempt, and the slot stays without magic.
  void publish(const SnapshotHeader& header, const Fence& fence);
  // Unmaps and closes (the file stays).
  void close();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::byte* map_ = nullptr;
  std::size_t cap_ = 0;
};

// ---- choosing what to resume from ----------------------------------------------------------

// Every rank's state of one step, written by one attempt in one layout.
struct SnapshotSet {
  std::int64_t step = 0, generation = 0;
  CheckpointLayout layout;
  std::vector<std::string> paths;  // per writer rank, 0 .. layout.world-1
  std::vector<int> holders;        // per writer rank: the rank whose node folder holds paths[w]
  int own_copies = 0, replicas = 0;  // how many of paths are the writer's own copy / a peer's replica
  bool found() const { return !paths.empty(); }
};

struct SnapshotSearch {
  std::string lineage;                // only this run's snapshots
  std::int64_t below_generation = 0;  // only snapshots of earlier attempts (> 0)
  std::string model_hash;             // "" = any model
};

// One snapshot file that verified, found in a node's folder.
struct SnapshotCandidate {
  std::string path;
  int holder = 0;    // the rank that scanned it: a rank of that node
  bool own = false;  // the writer's own copy (else a replica it sent)
  SnapshotMeta meta;
  bool operator==(const SnapshotCandidate&) const = default;
};

// Verifies every snapshot file in one node folder and returns those of `search`'s run, of an
// earlier attempt and of its model; each file skipped gets a line to `log` saying why.
std::vector<SnapshotCandidate> scan_snapshot_folder(const std::string& node_dir, int holder,
                                                    const SnapshotSearch& search, const LogFn& log = {});
// The newest step for which every rank of one layout has a candidate, all of one generation
// (among equal steps, the newest generation); own copies preferred over replicas. The same
// candidates in any order give the same set. Empty set when none is complete.
SnapshotSet choose_snapshot_set(std::vector<SnapshotCandidate> candidates);
// Candidates as text, one per line, to send between ranks (parse returns what format took).
std::string format_snapshot_candidates(const std::vector<SnapshotCandidate>& candidates);
std::vector<SnapshotCandidate> parse_snapshot_candidates(const std::string& text);

// Removes from one node folder the snapshots `search` accepts whose step is after `step`, and
// returns their paths: when an attempt resumes from an older step (or starts afresh), the
// newer snapshots of earlier attempts are of a history it replaces.
std::vector<std::string> discard_snapshots_after(const std::string& node_dir, const SnapshotSearch& search,
                                                 std::int64_t step);
// The same over candidates already scanned (a restart's own scan: the files are not read again).
std::vector<std::string> discard_snapshots_after(const std::vector<SnapshotCandidate>& candidates, std::int64_t step);

// Every node folder under run_dir scanned (holder 0), then choose_snapshot_set: one machine's
// view, where every folder can be read.
SnapshotSet find_snapshot_set(const std::string& run_dir, const SnapshotSearch& search, const LogFn& log = {});

// ---- keeping a snapshot beyond its job -------------------------------------------------------

// The newest complete snapshot set under run_dir (one machine's view: find_snapshot_set), saved
// as a committed HDF5 checkpoint of step N in checkpoint_dir (write_shard for each writer rank,
// then commit_checkpoint) when it is newer than every committed checkpoint of the same lineage
// there. A supervisor does this before the snapshots go at the end of a job (given up, stopped
// between attempts), so that the next job resumes from there instead of from an older
// checkpoint — or from step 0. `run` gives the lineage and hashes to record (the set's own
// layout gives the ranks); `opt` the fence (a generation newer than every attempt's), rotation
// and log. Returns the checkpoint's path and step; nullopt when no set is newer. Throws
// std::runtime_error when it cannot save one (nothing is committed then).
struct SavedSnapshot {
  std::string path;
  std::int64_t step = 0;
  std::int64_t newest_checkpoint = 0;  // the newest committed checkpoint's step before (0: none)
};
std::optional<SavedSnapshot> save_snapshot_as_checkpoint(const std::string& run_dir, const SnapshotSearch& search,
                                                         const std::string& checkpoint_dir,
                                                         const CheckpointLayout& run, const SaveOptions& opt);

// Reads tensors and ranges out of snapshots, by name, like CheckpointReader: whole tensors
// from any file that holds them whole, 1-D ranges (ZeRO-1 moments) stitched from the slices of
// every file.
class SnapshotReader {
 public:
  explicit SnapshotReader(const SnapshotSet& set);  // reads every file of the set
  explicit SnapshotReader(std::vector<SnapshotFile> files);  // those given (at least one)
  // The whole tensor (every element). Throws std::runtime_error naming it when no file holds
  // it whole and its 1-D slices do not cover it.
  std::vector<float> read(const std::string& name) const;
  // Elements [offset, offset + count) of the tensor's flattened view.
  void read_range(const std::string& name, std::int64_t offset, std::span<float> out) const;
  // The i-th file's (in the order given; for a set, writer rank i's).
  const ShardState& state(int i) const { return files_.at(i).state; }
  const SnapshotMeta& meta(int i) const { return files_.at(i).meta; }

 private:
  void index();
  std::vector<SnapshotFile> files_;
  std::map<std::string, std::vector<std::pair<int, int>>> where_;  // name → (file, slice)
};

// ---- ownership -----------------------------------------------------------------------------

// Holds the shared lock of <run_dir>/owner.lock while it lives (created if missing): the run
// is alive. Never throws from the destructor.
class SnapshotOwnerLock {
 public:
  explicit SnapshotOwnerLock(const std::string& run_dir);
  ~SnapshotOwnerLock();
  SnapshotOwnerLock(const SnapshotOwnerLock&) = delete;
  SnapshotOwnerLock& operator=(const SnapshotOwnerLock&) = delete;

 private:
  int fd_ = -1;
};

// Removes the snapshot folders (duet-*) under memory_dir whose owner.lock nobody holds — runs
// that died without cleaning up — except `keep_lineage`'s. Returns the folders removed.
std::vector<std::string> reclaim_dead_snapshots(const std::string& memory_dir, const std::string& keep_lineage);

// Bytes of the regular files under dir (0 when missing).
std::uint64_t folder_bytes(const std::string& dir);

}  // namespace duet::ckpt
