// save_snapshot_as_checkpoint (checkpoint/snapshot.h): an in-memory snapshot set written out
// as an HDF5 checkpoint, shard by shard, by the one process that can see every file.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "checkpoint/snapshot.h"

namespace duet::ckpt {

std::optional<SavedSnapshot> save_snapshot_as_checkpoint(const std::string& run_dir, const SnapshotSearch& search,
                                                         const std::string& checkpoint_dir,
                                                         const CheckpointLayout& run, const SaveOptions& opt) {
  const SnapshotSet set = find_snapshot_set(run_dir, search, opt.log);
  if (!set.found()) return std::nullopt;
  SavedSnapshot out;
  out.step = set.step;
  for (const CheckpointEntry& e : list_checkpoints(checkpoint_dir))
    if (e.committed && checkpoint_lineage(e.path) == search.lineage) out.newest_checkpoint = std::max(out.newest_checkpoint, e.step);
  if (set.step <= out.newest_checkpoint) return std::nullopt;
  CheckpointLayout layout = set.layout;  // the ranks that wrote the snapshots
  layout.lineage = run.lineage, layout.model_hash = run.model_hash, layout.config_hash = run.config_hash;
  try {
    for (int w = 0; w < (int)set.paths.size(); ++w) {
      std::string why;
      const std::optional<SnapshotFile> f = read_snapshot(set.paths[w], &why);
      if (!f) throw std::runtime_error("snapshot " + set.paths[w] + ": " + why);
      // Copies: a slice's floats need not be aligned for float in the file's bytes.
      std::vector<std::vector<float>> data(f->slices.size());
      std::vector<TensorSlice> slices(f->slices.size());
      for (std::size_t i = 0; i < f->slices.size(); ++i) {
        const SnapshotSlice& s = f->slices[i];
        data[i].resize((std::size_t)s.count);
        std::memcpy(data[i].data(), f->bytes.data() + s.data, data[i].size() * sizeof(float));
        slices[i] = TensorSlice{s.name, s.global_shape, s.offset, s.shape, data[i]};
      }
      ShardRequest req;
      req.dir = checkpoint_dir, req.step = set.step, req.rank = w, req.layout = layout, req.slices = slices;
      req.state = f->state;
      write_shard(req, opt);
    }
    out.path = commit_checkpoint(checkpoint_dir, set.step, layout, opt);
  } catch (...) {
    abort_checkpoint(checkpoint_dir, set.step, opt.fence.generation, layout.lineage);
    throw;
  }
  return out;
}

}  // namespace duet::ckpt
