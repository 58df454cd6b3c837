#pragma once
// Pieces shared by checkpoint/*.cpp; not part of the API (checkpoint/checkpoint.h is).

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "checkpoint/checkpoint.h"
#include "checkpoint/h5.h"

namespace duet::ckpt::detail {

constexpr const char* kStateGroup = "/_duet";
constexpr const char* kManifestFile = "manifest.json";
constexpr const char* kIndexFile = "index.h5";
constexpr const char* kCommittedFile = "COMMITTED";
constexpr const char* kLatestLink = "latest";
constexpr const char* kStagingSuffix = ".staging";

// "/" + name: where a tensor lives inside shard and index files.
std::string dataset_path(std::string_view tensor);

// Checks one rank's slices before anything is written: valid names, one slice per tensor,
// consistent ranks and bounds, data sizes. Throws std::invalid_argument naming the tensor.
void validate_slices(std::span<const TensorSlice> slices);

// Writes a shard file at `path` (the caller renames it into place). before_close runs after the
// datasets are written (fault injection). Throws; the caller removes the partial file.
void write_shard_file(const std::string& path, int rank, std::int64_t step, std::span<const TensorSlice> slices,
                      const ShardState& state, const std::function<void()>& before_close);

ShardState read_shard_state(hid_t file, const std::string& path);

// Opens the dataset of `slice` in a shard file and checks it against the manifest (shape,
// offset and global_shape attributes); throws naming the file and tensor on a mismatch.
h5::Id open_slice_dataset(hid_t file, const std::string& file_path, const SliceRecord& slice, const TensorInfo& tensor);

// Reads the part of `slice` (stored in dset) that falls inside the box [offset, offset+shape)
// into out, which holds that whole box row-major. No-op when they do not intersect.
void read_slice_part(hid_t dset, const SliceRecord& slice, std::span<const std::int64_t> offset,
                     std::span<const std::int64_t> shape, std::span<float> out, const std::string& context);

// Copies the box of `count` elements at src_off in a row-major float array of src_shape to
// dst_off in one of dst_shape; runs that are contiguous in both are copied with one memcpy.
void copy_box(const float* src, std::span<const std::int64_t> src_shape, std::span<const std::int64_t> src_off,
              float* dst, std::span<const std::int64_t> dst_shape, std::span<const std::int64_t> dst_off,
              std::span<const std::int64_t> count);

void write_index_file(const std::string& path, const Manifest& m);
std::vector<IndexEntry> read_index_entries(hid_t file);

// COMMITTED holds "duet checkpoint step N\nmanifest_xxh64 <hex>\n"; the manifest hash ties
// the marker to the manifest it committed.
std::string committed_text(std::int64_t step, std::string_view manifest_text);

// Reads COMMITTED and manifest.json of a checkpoint directory, checks they belong together,
// parses and validates the manifest. Throws naming the file and what is wrong.
Manifest read_committed_manifest(const std::string& path);

}  // namespace duet::ckpt::detail
