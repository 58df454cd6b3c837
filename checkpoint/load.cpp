// The load side: COMMITTED + manifest, finding the newest checkpoint that verifies, and
// reading any box of any tensor from the shards that hold it.
#include <algorithm>
#include <filesystem>
#include <sstream>

#include "checkpoint/files.h"
#include "checkpoint/hash.h"
#include "checkpoint/internal.h"

namespace duet::ckpt {
namespace fs = std::filesystem;
using namespace detail;

Manifest detail::read_committed_manifest(const std::string& path) {
  const std::string committed = (fs::path(path) / kCommittedFile).string();
  const std::string manifest = (fs::path(path) / kManifestFile).string();
  std::error_code ec;
  if (!fs::is_directory(path, ec)) throw std::runtime_error("'" + path + "' is not a checkpoint directory");
  if (!fs::exists(committed, ec)) throw std::runtime_error("'" + path + "' is not committed (no COMMITTED file)");
  std::istringstream marker(read_small_file(committed, 4096));
  std::string w1, w2, w3, key, hex;
  long long step = -1;
  std::uint64_t expect = 0;
  if (!(marker >> w1 >> w2 >> w3 >> step >> key >> hex) || w1 != "duet" || w2 != "checkpoint" || w3 != "step" ||
      key != "manifest_xxh64" || !parse_hex64(hex, expect))
    throw std::runtime_error("'" + committed + "' is damaged (expected 'duet checkpoint step N' and 'manifest_xxh64 HEX')");
  const std::string text = read_small_file(manifest);
  if (xxh64(text) != expect)
    throw std::runtime_error("'" + manifest + "' does not match COMMITTED (xxh64 " + format_hex64(xxh64(text)) +
                             ", COMMITTED says " + hex + "): the manifest changed after the commit");
  Manifest m = parse_manifest(text, manifest);
  if (m.step != step)
    throw std::runtime_error("'" + manifest + "' is for step " + std::to_string(m.step) + ", COMMITTED for step " +
                             std::to_string(step));
  // A run resumes at the step its checkpoint's name says (step-N, or step-N.<run id> beside
  // another run's step-N): a name that disagrees with the manifest is refused.
  const std::string dirname = fs::path(path).filename().string();
  const std::string digits = dirname.starts_with("step-") ? dirname.substr(5, dirname.find('.', 5) - 5) : "";
  if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos &&
      digits.size() < 19 && std::stoll(digits) != m.step)
    throw std::runtime_error("'" + path + "' holds step " + std::to_string(m.step) + " (renamed by hand?)");
  return m;
}

ResumePoint find_resumable_checkpoint(const std::string& dir, const VerifyOptions& opt, const LogFn& log) {
  ResumePoint out;
  auto all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    std::string why;
    if (opt.lineage && it->committed) {
      const auto lineage = checkpoint_lineage(it->path);
      if (lineage && *lineage != *opt.lineage) {  // another run's: not ours to verify or load
        out.foreign.push_back(fs::path(it->path).filename().string() + " (run " +
                              (lineage->empty() ? std::string("without a recorded id") : *lineage) + ")");
        continue;
      }
    }
    if (out.found()) continue;                              // only listing the other runs' checkpoints now
    if (opt.at_most && it->step > *opt.at_most) continue;  // newer than asked for: not a candidate
    if (!it->committed) {
      why = "not committed (no COMMITTED file)";
    } else {
      const VerifyReport rep = verify_checkpoint(it->path, opt);
      if (rep.ok()) {
        out.path = it->path;
        out.step = it->step;
        if (!opt.lineage) return out;
        continue;
      }
      why = rep.summary();
    }
    out.rejected.push_back(fs::path(it->path).filename().string() + ": " + why);
    if (log) log("checkpoint " + it->path + " rejected: " + why + "; trying an older one");
  }
  return out;
}

// ---- CheckpointReader ------------------------------------------------------------------------

struct CheckpointReader::OpenShard {
  std::string path;
  h5::Id file;
  std::map<std::string, h5::Id, std::less<>> datasets;
};

CheckpointReader::CheckpointReader(const std::string& path, const std::string& expect_model_hash) : path_(path) {
  VerifyOptions quick;
  quick.level = VerifyLevel::structure;
  quick.model_hash = expect_model_hash;
  const VerifyReport rep = verify_checkpoint(path, quick);
  if (!rep.ok()) throw std::runtime_error("cannot load checkpoint: " + rep.summary());
  manifest_ = read_committed_manifest(path);
  for (const ShardRecord& sh : manifest_.shards)
    for (const SliceRecord& sl : sh.slices) {
      auto& v = sources_[sl.tensor];
      const bool dup = std::any_of(v.begin(), v.end(), [&](const auto& p) {
        return p.second->offset == sl.offset && p.second->shape == sl.shape;
      });
      if (!dup) v.emplace_back(sh.rank, &sl);
    }
  shards_.resize(manifest_.shards.size());
}

CheckpointReader::~CheckpointReader() {
  h5::Session session;
  shards_.clear();
}

const TensorInfo& CheckpointReader::tensor(std::string_view name) const {
  const TensorInfo* t = manifest_.find_tensor(name);
  if (!t) throw std::runtime_error("checkpoint '" + path_ + "' has no tensor '" + std::string(name) + "'");
  return *t;
}

CheckpointReader::OpenShard& CheckpointReader::shard(int rank) {
  auto& slot = shards_.at(static_cast<std::size_t>(rank));
  if (!slot) {
    auto s = std::make_unique<OpenShard>();
    s->path = (fs::path(path_) / manifest_.shards[rank].file).string();
    std::error_code ec;
    if (!fs::exists(s->path, ec)) throw std::runtime_error("shard '" + s->path + "' is missing");
    s->file = h5::open_file(s->path);
    slot = std::move(s);
  }
  return *slot;
}

void CheckpointReader::read(std::string_view name, std::span<const std::int64_t> offset,
                            std::span<const std::int64_t> shape, std::span<float> out) {
  const TensorInfo& t = tensor(name);
  const std::string where = "checkpoint '" + path_ + "', tensor '" + t.name + "' " + format_shape(t.shape);
  if (offset.size() != t.shape.size() || shape.size() != t.shape.size())
    throw std::invalid_argument(where + ": asked for offset " + format_shape(offset) + ", shape " + format_shape(shape));
  for (std::size_t d = 0; d < shape.size(); ++d)
    if (offset[d] < 0 || shape[d] < 0 || offset[d] > t.shape[d] || shape[d] > t.shape[d] - offset[d])
      throw std::invalid_argument(where + ": the box at " + format_shape(offset) + " of shape " + format_shape(shape) +
                                  " does not fit");
  if (static_cast<std::int64_t>(out.size()) != element_count(shape))
    throw std::invalid_argument(where + ": output holds " + std::to_string(out.size()) + " values, the box " +
                                std::to_string(element_count(shape)));
  if (out.empty()) return;
  h5::Session session;
  // The manifest guarantees the distinct slices are disjoint and cover the tensor, so these
  // reads fill every element of the box exactly once.
  for (const auto& [rank, slice] : sources_.at(t.name)) {
    bool hit = true;
    for (std::size_t d = 0; d < shape.size() && hit; ++d)
      hit = std::max(offset[d], slice->offset[d]) < std::min(offset[d] + shape[d], slice->offset[d] + slice->shape[d]);
    if (!hit) continue;
    OpenShard& s = shard(rank);
    auto it = s.datasets.find(t.name);
    if (it == s.datasets.end()) it = s.datasets.emplace(t.name, open_slice_dataset(s.file.get(), s.path, *slice, t)).first;
    read_slice_part(it->second.get(), *slice, offset, shape, out, s.path + ": cannot read tensor '" + t.name + "'");
  }
}

std::vector<float> CheckpointReader::read(std::string_view name) {
  const TensorInfo& t = tensor(name);
  std::vector<float> out(static_cast<std::size_t>(element_count(t.shape)));
  const std::vector<std::int64_t> zero(t.shape.size(), 0);
  read(name, zero, t.shape, out);
  return out;
}

ShardState CheckpointReader::state(int rank) {
  if (rank < 0 || rank >= manifest_.layout.world)
    throw std::invalid_argument("checkpoint '" + path_ + "' has ranks 0.." + std::to_string(manifest_.layout.world - 1) +
                                ", not " + std::to_string(rank));
  h5::Session session;
  OpenShard& s = shard(rank);
  return read_shard_state(s.file.get(), s.path);
}

}  // namespace duet::ckpt
