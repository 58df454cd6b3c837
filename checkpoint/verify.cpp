// verify_checkpoint: structure, whole-file checksums, and a read of every dataset, reporting
// the file and (when it can be found) the tensor that is damaged.
#include <algorithm>
#include <filesystem>

#include "checkpoint/files.h"
#include "checkpoint/hash.h"
#include "checkpoint/internal.h"

namespace duet::ckpt {
namespace fs = std::filesystem;
using namespace detail;

namespace {

constexpr std::int64_t kScanElements = 16 << 20;  // read datasets in blocks of ~64 MiB

std::string tensors_held(const ShardRecord& sh) {
  if (sh.slices.empty()) return "no tensors";
  std::string s = "tensors ";
  for (std::size_t k = 0; k < sh.slices.size() && k < 3; ++k) s += (k ? ", '" : "'") + sh.slices[k].tensor + "'";
  if (sh.slices.size() > 3) s += " and " + std::to_string(sh.slices.size() - 3) + " more";
  return s;
}

// Reads every dataset of one shard (Fletcher32 is checked on each chunk read) and its state.
// Returns the problems found, each naming the tensor.
std::vector<VerifyProblem> scan_shard(const std::string& path, const Manifest& m, const ShardRecord& sh) {
  std::vector<VerifyProblem> out;
  h5::Session session;
  h5::Id file;
  try {
    file = h5::open_file(path);
  } catch (const std::exception& e) {
    out.push_back({sh.file, "", std::string(e.what()) + ": lost with it are " + tensors_held(sh)});
    return out;
  }
  // A whole shard of another checkpoint (or rank) put in this one's place reads cleanly: its
  // own step and rank say so.
  try {
    for (const auto& [attr, want] : {std::pair<const char*, std::int64_t>{"step", m.step}, {"rank", sh.rank}})
      if (h5::has_attr(file.get(), attr))
        if (const auto v = h5::read_attr_ints(file.get(), attr); v.size() == 1 && v[0] != want)
          out.push_back({sh.file, "",
                         std::string("the file is the shard of ") + attr + " " + std::to_string(v[0]) + ", not " +
                             std::to_string(want) + " (a shard copied from another checkpoint or rank)"});
  } catch (const std::exception&) {  // an unreadable attribute: the datasets below say more
  }
  std::vector<float> buf;
  for (const SliceRecord& sl : sh.slices) {
    try {
      const TensorInfo& t = *m.find_tensor(sl.tensor);
      h5::Id dset = open_slice_dataset(file.get(), path, sl, t);
      if (element_count(sl.shape) == 0) continue;
      // Blocks of whole rows of the first dimension, relative to the slice.
      const std::int64_t row = element_count(std::span(sl.shape).subspan(1));
      const std::int64_t rows = std::max<std::int64_t>(1, kScanElements / std::max<std::int64_t>(row, 1));
      for (std::int64_t r0 = 0; r0 < sl.shape[0]; r0 += rows) {
        std::vector<std::int64_t> off = sl.offset, shape = sl.shape;
        off[0] += r0;
        shape[0] = std::min(rows, sl.shape[0] - r0);
        buf.resize(static_cast<std::size_t>(element_count(shape)));
        read_slice_part(dset.get(), sl, off, shape, buf, "cannot read");
      }
    } catch (const std::exception& e) {
      out.push_back({sh.file, sl.tensor, e.what()});
    }
  }
  try {
    read_shard_state(file.get(), path);
  } catch (const std::exception& e) {
    out.push_back({sh.file, "/_duet", e.what()});
  }
  return out;
}

}  // namespace

std::string VerifyReport::summary() const {
  if (ok()) return path + ": OK";
  std::string s = path + ": ";
  for (std::size_t k = 0; k < problems.size() && k < 4; ++k) {
    const VerifyProblem& p = problems[k];
    s += (k ? "; " : "") + p.file + (p.tensor.empty() ? "" : ": tensor '" + p.tensor + "'") + ": " + p.message;
  }
  if (problems.size() > 4) s += "; and " + std::to_string(problems.size() - 4) + " more problems";
  return s;
}

VerifyReport verify_checkpoint(const std::string& path, const VerifyOptions& opt) {
  VerifyReport rep;
  rep.path = path;
  Manifest m;
  try {
    m = read_committed_manifest(path);
  } catch (const std::exception& e) {
    rep.problems.push_back({kManifestFile, "", e.what()});
    return rep;
  }
  rep.step = m.step;
  if (!opt.model_hash.empty() && m.layout.model_hash != opt.model_hash) {
    rep.problems.push_back({kManifestFile, "",
                            "written for model hash '" + m.layout.model_hash + "', this model's hash is '" +
                                opt.model_hash + "' (a checkpoint of another model)"});
    return rep;
  }
  std::error_code ec;
  // index.h5 is checked like a shard: HDF5 should never parse a damaged file of ours.
  const std::string index = (fs::path(path) / kIndexFile).string();
  const auto index_size = fs::file_size(index, ec);
  if (ec) {
    rep.problems.push_back({kIndexFile, "", "missing (" + ec.message() + ")"});
  } else if (index_size != m.index.bytes) {
    rep.problems.push_back({kIndexFile, "", "is " + std::to_string(index_size) + " bytes, the manifest says " +
                                                 std::to_string(m.index.bytes)});
  } else if (opt.level != VerifyLevel::structure) {
    try {
      const FileDigest d = hash_file(index);
      if (d.xxh64 != m.index.xxh64)
        rep.problems.push_back({kIndexFile, "", "checksum mismatch (xxh64 " + format_hex64(d.xxh64) +
                                                    ", the manifest says " + format_hex64(m.index.xxh64) + ")"});
    } catch (const std::exception& e) {
      rep.problems.push_back({kIndexFile, "", e.what()});
    }
  }

  for (const ShardRecord& sh : m.shards) {
    const std::string file = (fs::path(path) / sh.file).string();
    const auto size = fs::file_size(file, ec);
    if (ec) {
      rep.problems.push_back({sh.file, "", "missing (" + ec.message() + "): lost with it are " + tensors_held(sh)});
      continue;
    }
    if (size != sh.bytes) {
      // HDF5 refuses to open a file shorter than its recorded end, so every tensor in it is lost.
      rep.problems.push_back({sh.file, "",
                              "is " + std::to_string(size) + " bytes, the manifest says " + std::to_string(sh.bytes) +
                                  (size < sh.bytes ? " (truncated)" : "") + ": lost with it are " + tensors_held(sh)});
      continue;
    }
    if (opt.level == VerifyLevel::structure || (opt.shards && !opt.shards(sh.rank))) continue;
    FileDigest d;
    try {
      d = hash_file(file);
    } catch (const std::exception& e) {
      rep.problems.push_back({sh.file, "", e.what()});
      continue;
    }
    if (d.xxh64 != sh.xxh64) {
      // Name the tensor hit, if the damage is in data (Fletcher32 per chunk finds it).
      const std::string msg = "checksum mismatch (xxh64 " + format_hex64(d.xxh64) + ", the manifest says " +
                              format_hex64(sh.xxh64) + ")";
      auto found = scan_shard(file, m, sh);
      if (found.empty()) {
        rep.problems.push_back({sh.file, "", msg + "; every dataset still reads: the damage is in HDF5 metadata or unused space"});
      } else {
        for (auto& p : found) p.message = msg + ": " + p.message;
        rep.problems.insert(rep.problems.end(), found.begin(), found.end());
      }
      continue;
    }
    if (opt.level == VerifyLevel::full) {
      auto found = scan_shard(file, m, sh);
      rep.problems.insert(rep.problems.end(), found.begin(), found.end());
    }
  }
  return rep;
}

}  // namespace duet::ckpt
