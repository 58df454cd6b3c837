#pragma once
// Sharded HDF5 checkpoints: every rank writes its own shard, rank 0 commits atomically, any
// layout can read any slice back. No MPI here: the runtime supplies the agreement between
// ranks as a callback. docs/checkpoints.md describes the format and the protocol in full.
//
//   <dir>/step-000100/
//       shard-00000.h5 …   one per rank: its tensor slices (float32, chunked, Fletcher32 per
//                          chunk; attributes global_shape and offset) and, in /_duet, its
//                          ShardState (step, data position, RNG bytes, attributes)
//       index.h5           one HDF5 virtual dataset per tensor, stitching the shards' slices
//                          into the whole tensor (h5ls/h5dump/h5py read it like any file)
//       manifest.json      layout, step, hashes; each shard's size, XXH64 and slices
//       COMMITTED          written last; holds the manifest's XXH64
//   <dir>/latest -> step-000100        moved atomically after the commit
//   <dir>/step-000200.staging/         a save in progress, or one that died: never loaded
//   <dir>/step-000200.g7.staging/      the same, of attempt generation 7 (checkpoint/fence.h)
//
// One save (save_checkpoint runs all of it for one rank):
//   every rank:  write_shard()        shard + sidecar into the staging directory, fsync'd
//   all ranks:   all_agree(ok)        false anywhere → rank 0 abort_checkpoint(); nothing committed
//   rank 0:      commit_checkpoint()  index.h5, manifest.json, COMMITTED, fsync, rename
//                                     staging → step-N, latest → step-N, rotate old ones
//   all ranks:   all_agree(rank 0 committed)   so every rank reports the same verdict
// A crash at any moment leaves either the previous checkpoints as they were or a fully
// written, fsync'd, COMMITTED step-N: a checkpoint is good iff its directory has its final
// name, COMMITTED matches manifest.json, and it verifies. `latest` is a convenience for
// people and tools; loading scans the directory and does not trust it.
//
// Threads: the Debian HDF5 build is not thread-safe, so every function here takes one
// process-wide lock around its HDF5 calls (checkpoint/h5.h). Two threads may call these
// functions; their HDF5 work runs one at a time.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "checkpoint/fence.h"
#include <vector>

#include "checkpoint/manifest.h"

namespace duet::ckpt {

// Call once before MPI_Init in processes that write checkpoints under MPI: parallel HDF5
// initialised after MPI_Init would run its cleanup inside MPI_Finalize, which crashes on a
// file whose close failed (a full disk). Harmless elsewhere.
void init_before_mpi();

// ---- what a rank saves -----------------------------------------------------------------------

// One tensor, or the slice [offset, offset + shape) of a global tensor, owned by a rank. A flat
// range of a tensor (a ZeRO-1 shard of a flattened buffer) is saved as a 1-D slice of the
// tensor's flattened view: global_shape = {numel}. A tensor has at least one dimension (save a
// scalar as shape {1}); a rank holds at most one slice of each tensor; every rank that holds a
// slice of a tensor gives the same global_shape; replicas (identical boxes on several ranks)
// are allowed, other overlaps are not, and together the slices must cover the whole tensor.
struct TensorSlice {
  std::string name;  // "layers.3.moe.experts.5.w13", "opt.m/layers.3.attn.wqkv" ('/' = HDF5 group)
  std::vector<std::int64_t> global_shape;
  std::vector<std::int64_t> offset;  // same rank as global_shape
  std::vector<std::int64_t> shape;   // this slice
  std::span<const float> data;       // element_count(shape) values, row-major
};

// Per-rank extras, stored in the shard's /_duet group. Opaque to this library.
struct ShardState {
  std::int64_t data_position = 0;            // e.g. the token offset of the data loader
  std::vector<std::uint8_t> rng_state;       // RNG state bytes
  std::map<std::string, std::string> attributes;  // text values (no NUL bytes), each < 64 KiB
  bool operator==(const ShardState&) const = default;
};

using AgreeFn = std::function<bool(bool ok)>;  // true iff every rank passed ok = true
using LogFn = std::function<void(std::string_view line)>;

// ---- saving ----------------------------------------------------------------------------------

// Where rank 0's commit can be made to stop, as if the process died right after that step.
enum class CommitStage { shards_checked, index_written, manifest_written, committed_marker, renamed, latest_updated };

struct SaveOptions {
  int keep = 0;  // after a commit keep the newest `keep` good checkpoints (0 = keep all)
  LogFn log;     // one line per event worth telling a person (waits, fallbacks, rotation)
  // Fault injection for tests: runs on each rank after its datasets are written, before the
  // shard file is closed. Throwing from it is a failed write (e.g. ENOSPC); blocking in it
  // holds the save in progress.
  std::function<void(int rank, std::int64_t step)> before_shard_close;
  // Rank 0 stops the commit right after this stage, leaving the files as a killed process
  // would (commit_checkpoint throws CheckpointCrash, nothing is cleaned up).
  std::optional<CommitStage> crash_after;
  // Called by rank 0's commit as it completes each stage (fault injection: a test can kill
  // the process there).
  std::function<void(std::int64_t step, CommitStage)> at_stage;
  // This attempt's generation: its saves stage in their own directory, and its commit is
  // refused once a newer attempt has started (checkpoint/fence.h). Default: no fencing.
  Fence fence;
};

struct CheckpointCrash : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ShardRequest {
  std::string dir;  // the checkpoint root (checkpoint.dir), created if missing
  std::int64_t step = 0;
  int rank = 0;  // 0 .. layout.world-1
  CheckpointLayout layout;
  std::span<const TensorSlice> slices;
  ShardState state;
};

// "step-000100" (at least six digits); checkpoint_path(dir, step) = dir/step-000100.
std::string checkpoint_dirname(std::int64_t step);
std::string checkpoint_path(const std::string& dir, std::int64_t step);
// Where a save of `step` by attempt generation `generation` (0: unfenced) of run `lineage`
// ("": none recorded) is written: step-N[.<lineage>][.gG].staging. Runs sharing a checkpoint
// folder, whose generations come from fences of their own, never stage in the same place.
std::string staging_path(const std::string& dir, std::int64_t step, std::int64_t generation = 0,
                         const std::string& lineage = "");

// Every rank: writes <staging>/shard-RRRRR.h5 (through a temporary name), fsyncs it, hashes
// it, then writes its sidecar shard-RRRRR.json. Throws std::invalid_argument for bad slices
// (naming the tensor) and std::runtime_error for I/O failures (naming the file and the
// system's reason); a failed write leaves no partial shard behind.
ShardRecord write_shard(const ShardRequest& req, const SaveOptions& opt = {});

// Rank 0, after every rank's write_shard succeeded: merges the sidecars into manifest.json
// (checking that every rank wrote, for the same step and layout, and that the slices cover
// every tensor), writes index.h5 and COMMITTED, renames the staging directory into place,
// moves `latest`, rotates old checkpoints. Returns the checkpoint's path. On failure removes
// the staging directory (previous checkpoints untouched) and throws; failures after the
// rename (latest, rotation) are logged, not thrown: the checkpoint is committed by then.
std::string commit_checkpoint(const std::string& dir, std::int64_t step, const CheckpointLayout& layout,
                              const SaveOptions& opt = {});

// Rank 0, after the agreement failed: removes the staging directory of `step`.
void abort_checkpoint(const std::string& dir, std::int64_t step, std::int64_t generation = 0,
                      const std::string& lineage = "");

// Deletes committed checkpoints older than the newest `keep` that pass the structure check
// (commit_checkpoint calls it with SaveOptions::keep). With fewer than `keep` good ones it
// deletes nothing, so the only good checkpoint is never deleted; broken ones newer than the
// oldest kept stay for a person to look at until they age out. keep <= 0: keep all.
// With a lineage (commit_checkpoint passes a non-empty CheckpointLayout::lineage) only
// checkpoints whose manifest names that lineage are counted or deleted: another run's
// checkpoints in the same folder are never touched.
void rotate_checkpoints(const std::string& dir, int keep, const LogFn& log = {},
                        const std::optional<std::string>& lineage = std::nullopt);

// Lineages (runs) share a checkpoint folder without touching each other's checkpoints. A
// checkpoint of step N is saved as step-N, unless step-N holds a checkpoint of another lineage
// (or one whose lineage cannot be read): then as step-N.<lineage>. Never over another run's.
// Returns the path commit_checkpoint renames the staging directory to.
std::string checkpoint_final_path(const std::string& dir, std::int64_t step, const std::string& lineage);

// The lineage recorded in a committed checkpoint's manifest ("" when none was recorded);
// nullopt when the manifest cannot be read (not committed, damaged).
std::optional<std::string> checkpoint_lineage(const std::string& path);

struct SaveResult {
  std::int64_t step = -1;
  bool committed = false;
  std::string path;   // the committed checkpoint
  std::string error;  // why not, when !committed (this rank's reason, or "another rank failed")
  double seconds = 0;        // writing, agreeing and committing
  double stall_seconds = 0;  // async saves: the snapshot copy that blocked the caller
  double wait_seconds = 0;   // async saves: waiting for the previous save to finish first
};

// The whole protocol for one rank (see the top of this file); all ranks call it with the same
// step and layout. all_agree is called exactly twice on every rank, whatever fails.
SaveResult save_checkpoint(const ShardRequest& req, const AgreeFn& all_agree, const SaveOptions& opt = {});

// ---- finding and verifying -------------------------------------------------------------------

struct CheckpointEntry {
  std::int64_t step = 0;
  std::string path;
  bool committed = false;  // COMMITTED present (not yet verified)
};
// Directories named step-N or step-N.<lineage> under dir (not *.staging, *.replaced), oldest
// first. Empty if dir is missing.
std::vector<CheckpointEntry> list_checkpoints(const std::string& dir);

enum class VerifyLevel {
  structure,  // COMMITTED matches manifest.json, which parses and validates; every shard and
              // index.h5 exists with the recorded size; model hash matches
  checksums,  // + every shard's XXH64
  full,       // + every dataset read back (Fletcher32 per chunk) and its attributes checked
};

struct VerifyOptions {
  VerifyLevel level = VerifyLevel::checksums;
  std::string model_hash;               // "" = accept any model
  std::function<bool(int rank)> shards;  // which shards to check beyond structure (all if empty),
                                         // e.g. to split the reading among ranks
  // find_resumable_checkpoint: only checkpoints of this lineage; committed ones of another
  // lineage are skipped (listed in ResumePoint::foreign, never verified or loaded).
  std::optional<std::string> lineage;
  // find_resumable_checkpoint: only checkpoints of this step or older (the newer ones are not
  // looked at), e.g. to search again below a step another rank could not verify.
  std::optional<std::int64_t> at_most;
};

struct VerifyProblem {
  std::string file;    // "shard-00003.h5", "manifest.json", …
  std::string tensor;  // the tensor found damaged, when one is
  std::string message;
};

struct VerifyReport {
  std::string path;
  std::int64_t step = -1;
  std::vector<VerifyProblem> problems;
  bool ok() const { return problems.empty(); }
  std::string summary() const;  // "…/step-000100: shard-00003.h5: tensor 'w': …" (first problems)
};

// A checksum mismatch is followed by reading the shard's datasets, to name the tensor hit.
VerifyReport verify_checkpoint(const std::string& path, const VerifyOptions& opt = {});

struct ResumePoint {
  std::string path;  // empty when no committed checkpoint verified
  std::int64_t step = -1;
  std::vector<std::string> rejected;  // one line per newer checkpoint that failed, and why
  std::vector<std::string> foreign;   // "step-000004 (run 1a2b…)": other lineages' checkpoints, left alone
  bool found() const { return !path.empty(); }
};

// The newest committed checkpoint under dir that verifies; each one rejected on the way is
// logged ("checkpoint step-000200 rejected: …; trying an older one").
ResumePoint find_resumable_checkpoint(const std::string& dir, const VerifyOptions& opt = {}, const LogFn& log = {});

// ---- reading ---------------------------------------------------------------------------------

// Reads tensors of one committed checkpoint, in any slicing: read() assembles the requested box
// from whichever shards hold it (directly, using the manifest; Fletcher32 checked per chunk),
// so a checkpoint written with one layout loads into any other. Opening checks the structure
// (VerifyLevel::structure) and throws naming what is wrong; it does not read whole files, so
// verify first (find_resumable_checkpoint does) when they may be damaged: HDF5 1.10 can crash
// on malformed metadata. Use from one thread at a time.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::string& path, const std::string& expect_model_hash = "");
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const std::string& path() const { return path_; }
  const Manifest& manifest() const { return manifest_; }
  std::int64_t step() const { return manifest_.step; }
  const TensorInfo& tensor(std::string_view name) const;  // throws naming the tensor if absent

  // The box [offset, offset + shape) of tensor `name` into `out` (row-major, element_count(shape)).
  void read(std::string_view name, std::span<const std::int64_t> offset, std::span<const std::int64_t> shape,
            std::span<float> out);
  std::vector<float> read(std::string_view name);  // the whole tensor

  // The ShardState saved by `rank`.
  ShardState state(int rank);

 private:
  struct OpenShard;
  OpenShard& shard(int rank);
  std::string path_;
  Manifest manifest_;
  // Per tensor, its distinct slices (replicas dropped) and the rank holding each.
  std::map<std::string, std::vector<std::pair<int, const SliceRecord*>>, std::less<>> sources_;
  std::vector<std::unique_ptr<OpenShard>> shards_;  // opened lazily
};

// Reads a whole tensor through index.h5's virtual dataset, after checking index.h5 against the
// manifest (size, XXH64) and that every source file it maps exists and holds the source
// dataset (HDF5 itself would return fill values for a missing source). For tools and tests;
// CheckpointReader does not need the index.
std::vector<float> read_tensor_via_index(const std::string& path, std::string_view name);

// What an index file holds, read as it is (no checksum: the fuzz target feeds it garbage).
// HDF5 1.10 itself can crash on malformed files, so only verified files should reach it.
struct IndexEntry {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<std::string> sources;  // "shard-00001.h5:/name" per mapping
};
std::vector<IndexEntry> read_index(const std::string& index_file);
std::vector<IndexEntry> read_index_image(std::span<const std::uint8_t> bytes);  // from memory

}  // namespace duet::ckpt
