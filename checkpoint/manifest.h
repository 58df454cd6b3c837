#pragma once
// manifest.json: what a committed checkpoint holds and how to check it.
//
// {
//   "format": "duet-checkpoint", "version": 1, "step": 100,
//   "layout": {"world": 8, "pp": 4, "dp": 2, "ep": 2, "schedule": "dualpipe",
//              "config_hash": "…", "model_hash": "…", "lineage": "…"},  (lineage: when set)
//   "index": {"file": "index.h5", "bytes": 9120, "xxh64": "…"},
//   "tensors": [{"name": "layers.0.attn.wqkv", "dtype": "float32", "shape": [64, 192]}, …],
//   "shards": [{"rank": 0, "file": "shard-00000.h5", "bytes": 123456,
//               "xxh64": "9f2c…(16 hex)", "slices": [{"tensor": "…", "offset": [0, 0],
//                                                      "shape": [32, 192]}, …]}, …]
// }
//
// Invariants checked by validate_manifest (and therefore by every reader): one shard per rank
// 0..world-1 named shard-RRRRR.h5; every slice lies inside its tensor; slices of a tensor are
// either identical (replicas) or disjoint, and together cover every element exactly — so a
// read of any box is answered entirely from shard data, never from fill values.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace duet::ckpt {

// How the job that wrote a checkpoint was laid out. model_hash identifies the model (the
// tensor table): a checkpoint of another model is refused. config_hash is recorded, not
// enforced: resuming with a new layout legitimately changes the config. lineage is the id of
// the run that wrote it (run.id): rotation and resume consider only checkpoints of their own
// lineage ("" = not recorded: written before lineages existed, or by a tool).
struct CheckpointLayout {
  int world = 1, pp = 1, dp = 1, ep = 1;
  std::string schedule;
  std::string config_hash;
  std::string model_hash;
  std::string lineage;
  bool operator==(const CheckpointLayout&) const = default;
};

struct TensorInfo {
  std::string name;
  std::string dtype = "float32";  // the only dtype written today
  std::vector<std::int64_t> shape;
  bool operator==(const TensorInfo&) const = default;
};

// One slice of a tensor held by a shard: the box [offset, offset + shape).
struct SliceRecord {
  std::string tensor;
  std::vector<std::int64_t> offset, shape;
  bool operator==(const SliceRecord&) const = default;
};

struct ShardRecord {
  int rank = 0;
  std::string file;         // shard-RRRRR.h5, relative to the checkpoint directory
  std::uint64_t bytes = 0;  // exact file size
  std::uint64_t xxh64 = 0;  // of the whole file
  std::vector<SliceRecord> slices;
  bool operator==(const ShardRecord&) const = default;
};

// A file of the checkpoint other than the shards, with its exact size and checksum.
struct FileRecord {
  std::string file;
  std::uint64_t bytes = 0;
  std::uint64_t xxh64 = 0;
  bool operator==(const FileRecord&) const = default;
};

struct Manifest {
  int version = 1;
  std::int64_t step = 0;
  CheckpointLayout layout;
  FileRecord index;                 // index.h5
  std::vector<TensorInfo> tensors;  // sorted by name
  std::vector<ShardRecord> shards;  // index == rank
  bool operator==(const Manifest&) const = default;

  const TensorInfo* find_tensor(std::string_view name) const;  // nullptr when absent
};

// What each rank writes next to its shard (shard-RRRRR.json in the staging directory): its
// manifest entry plus the step, layout and global shapes it believes in. Rank 0 merges these
// into manifest.json and checks that they agree.
struct ShardSidecar {
  std::int64_t step = 0;
  CheckpointLayout layout;
  std::vector<TensorInfo> tensors;  // the tensors this shard holds slices of
  ShardRecord shard;
  bool operator==(const ShardSidecar&) const = default;
};

std::string manifest_to_json(const Manifest& m);
// Parses and validates; every error starts with `origin` (a path) and says what is wrong
// where ("…/manifest.json: shards[3].slices[0]: offset [8] + shape [8] exceeds …").
Manifest parse_manifest(std::string_view text, std::string_view origin);
void validate_manifest(const Manifest& m, std::string_view origin);

std::string sidecar_to_json(const ShardSidecar& s);
ShardSidecar parse_sidecar(std::string_view text, std::string_view origin);

// "shard-00042.h5" (at least five digits).
std::string shard_file_name(int rank);

// Tensor names are HDF5 paths inside the files: [A-Za-z0-9._+:=@-] and '/', no empty, "."
// or ".." component, no leading or trailing '/', not starting with "_duet" (reserved for
// per-rank state). Throws std::invalid_argument saying what is wrong.
void validate_tensor_name(std::string_view name);

// Product of the dims; throws std::invalid_argument on a negative dim or overflow past 2^62.
std::int64_t element_count(std::span<const std::int64_t> shape);

std::string format_shape(std::span<const std::int64_t> shape);  // "[4, 8]"

}  // namespace duet::ckpt
