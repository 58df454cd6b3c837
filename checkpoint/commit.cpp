// The save side of the protocol: each rank's shard, rank 0's commit, `latest`, rotation.
// The order of durable steps is the whole point of this file; see checkpoint/checkpoint.h.
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <algorithm>
#include <map>
#include <optional>
#include <sstream>
#include <string_view>
#include <tuple>
#include <vector>

#include "checkpoint/files.h"
#include "checkpoint/hash.h"
#include "checkpoint/internal.h"

namespace duet::ckpt {
namespace fs = std::filesystem;
using namespace detail;

namespace {

std::string sidecar_name(int rank) {
  std::string s = shard_file_name(rank);
  return s.substr(0, s.size() - 3) + ".json";
}

const char* stage_name(CommitStage s) {
  switch (s) {
    case CommitStage::shards_checked: return "shards_checked";
    case CommitStage::index_written: return "index_written";
    case CommitStage::manifest_written: return "manifest_written";
    case CommitStage::committed_marker: return "committed_marker";
    case CommitStage::renamed: return "renamed";
    case CommitStage::latest_updated: return "latest_updated";
  }
  return "?";
}

void say(const SaveOptions& opt, const std::string& line) {
  if (opt.log) opt.log(line);
}

std::string describe_layout(const CheckpointLayout& l) {
  return "world " + std::to_string(l.world) + " (pp " + std::to_string(l.pp) + ", dp " + std::to_string(l.dp) + ", ep " +
         std::to_string(l.ep) + ", " + l.schedule + "), model hash '" + l.model_hash + "', config hash '" +
         l.config_hash + "'";
}

// Reads every rank's sidecar and builds the manifest; throws naming the first rank whose
// shard is missing or disagrees.
Manifest merge_sidecars(const std::string& staging, std::int64_t step, const CheckpointLayout& layout) {
  Manifest m;
  m.step = step;
  m.layout = layout;
  m.index.file = kIndexFile;  // size and checksum once it is written
  std::map<std::string, std::pair<TensorInfo, int>> tensors;  // name → (info, first rank)
  for (int r = 0; r < layout.world; ++r) {
    const std::string side = (fs::path(staging) / sidecar_name(r)).string();
    std::error_code ec;
    if (!fs::exists(side, ec))
      throw std::runtime_error("rank " + std::to_string(r) + " did not finish its shard: '" + side + "' is missing");
    ShardSidecar sc = parse_sidecar(read_small_file(side), side);
    if (sc.step != step)
      throw std::runtime_error("'" + side + "' was written for step " + std::to_string(sc.step) + ", not " + std::to_string(step));
    if (sc.layout != layout)
      throw std::runtime_error("'" + side + "' was written with " + describe_layout(sc.layout) + "; rank 0 has " +
                               describe_layout(layout));
    if (sc.shard.rank != r || sc.shard.file != shard_file_name(r))
      throw std::runtime_error("'" + side + "' describes rank " + std::to_string(sc.shard.rank) + " ('" + sc.shard.file + "')");
    const std::string shard = (fs::path(staging) / sc.shard.file).string();
    const auto size = fs::file_size(shard, ec);
    if (ec) throw std::runtime_error("rank " + std::to_string(r) + "'s shard '" + shard + "': " + ec.message());
    if (size != sc.shard.bytes)
      throw std::runtime_error("'" + shard + "' is " + std::to_string(size) + " bytes, its sidecar says " +
                               std::to_string(sc.shard.bytes));
    for (TensorInfo& t : sc.tensors) {
      auto [it, fresh] = tensors.try_emplace(t.name, t, r);
      if (!fresh && it->second.first.shape != t.shape)
        throw std::runtime_error("tensor '" + t.name + "' has global shape " + format_shape(it->second.first.shape) +
                                 " on rank " + std::to_string(it->second.second) + " but " + format_shape(t.shape) +
                                 " on rank " + std::to_string(r));
    }
    m.shards.push_back(std::move(sc.shard));
  }
  for (auto& [name, t] : tensors) m.tensors.push_back(std::move(t.first));
  validate_manifest(m, (fs::path(staging) / kManifestFile).string());
  return m;
}

// Removes everything in the staging directory that the committed checkpoint does not list:
// sidecars, temporaries, shards of ranks beyond this world left by an earlier attempt.
void remove_strays(const std::string& staging, const Manifest& m) {
  std::map<std::string, bool> keep = {{kIndexFile, true}, {kManifestFile, true}};
  for (const auto& s : m.shards) keep[s.file] = true;
  for (const auto& e : fs::directory_iterator(staging))
    if (!keep.count(e.path().filename().string())) fs::remove_all(e.path());
}

// Moves staging to final. When final exists (the same step saved again after a resume from
// an older checkpoint) the two are exchanged atomically where the file system allows it.
void move_into_place(const std::string& staging, const std::string& final_path) {
  if (::rename(staging.c_str(), final_path.c_str()) == 0) return;
  if (errno != ENOTEMPTY && errno != EEXIST)
    throw std::runtime_error("cannot rename '" + staging + "' to '" + final_path + "': " + std::strerror(errno));
  std::error_code ec;
  if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, final_path.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(staging, ec);  // now the replaced checkpoint; a leftover is removed next commit
    return;
  }
  // No atomic exchange on this file system: move the old one aside, and back if that fails.
  const std::string old = final_path + ".replaced";
  fs::remove_all(old, ec);
  fs::rename(final_path, old);
  if (::rename(staging.c_str(), final_path.c_str()) != 0) {
    const int err = errno;
    fs::rename(old, final_path, ec);
    throw std::runtime_error("cannot rename '" + staging + "' to '" + final_path + "': " + std::strerror(err));
  }
  fs::remove_all(old, ec);
}

// Whether `name` (a folder of the checkpoint directory) is a leftover of this run's own saves:
// a staging folder of its lineage, of this attempt's generation or an older one's
// (step-N.<lineage>[.gG].staging, staging_path), or a checkpoint of its own moved aside by an
// interrupted replacement (step-N[.<lineage>].replaced; a step-N.replaced whose manifest is
// gone was being deleted). Another run's, and a newer attempt's, are never its to remove.
// Staging folders without a lineage (step-N[.gG].staging) are of saves made before stagings
// were named by run, or of runs without an id: removed by any commit of the same generation or
// a newer one, as they always were.
bool own_leftover(const std::string& dir, const std::string& name, const std::string& lineage, std::int64_t generation) {
  if (!name.starts_with("step-")) return false;
  auto parts_of = [&](std::string_view suffix) {
    std::vector<std::string> parts;
    std::stringstream in(name.substr(0, name.size() - suffix.size()));
    for (std::string p; std::getline(in, p, '.');) parts.push_back(p);
    return parts;
  };
  auto generation_part = [&](const std::string& p) {
    if (p.size() < 2 || p[0] != 'g' || p.find_first_not_of("0123456789", 1) != std::string::npos || p.size() > 19)
      return false;
    return std::stoll(p.substr(1)) <= generation;
  };
  if (name.ends_with(kStagingSuffix)) {
    const auto parts = parts_of(kStagingSuffix);
    // Without a lineage: step-N.staging, or step-N.gG.staging of this generation or an older one.
    if (parts.size() == 1 || (parts.size() == 2 && parts[1] != lineage && generation_part(parts[1]))) return true;
    return !lineage.empty() && parts.size() >= 2 && parts[1] == lineage &&
           (parts.size() == 2 || (parts.size() == 3 && generation_part(parts[2])));
  }
  if (name.ends_with(".replaced")) {
    const auto parts = parts_of(".replaced");
    if (parts.size() == 2) return !lineage.empty() && parts[1] == lineage;
    if (parts.size() != 1) return false;
    const auto owner = checkpoint_lineage((fs::path(dir) / name).string());
    return !owner || *owner == lineage;
  }
  return false;
}

// Removes this run's leftovers of interrupted saves (other steps than the one just committed:
// no other save of this attempt can be in flight while rank 0 commits).
void remove_leftovers(const std::string& dir, std::int64_t step, const std::string& lineage, const SaveOptions& opt) {
  const std::string current = staging_path(dir, step, opt.fence.generation, lineage);
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.path().string() != current && own_leftover(dir, name, lineage, opt.fence.generation)) {
      std::error_code ec;
      fs::remove_all(e.path(), ec);
      say(opt, "checkpoint: removed leftover '" + e.path().string() + "' of an interrupted save");
    }
  }
}

}  // namespace

void rotate_checkpoints(const std::string& dir, int keep, const LogFn& log, const std::optional<std::string>& lineage) {
  if (keep <= 0) return;
  auto all = list_checkpoints(dir);
  if (lineage)
    std::erase_if(all, [&](const CheckpointEntry& e) { return checkpoint_lineage(e.path) != lineage; });
  VerifyOptions quick;
  quick.level = VerifyLevel::structure;
  int good = 0;
  std::int64_t oldest_kept = -1;
  for (auto it = all.rbegin(); it != all.rend() && good < keep; ++it)
    if (it->committed && verify_checkpoint(it->path, quick).ok()) ++good, oldest_kept = it->step;
  if (good < keep) return;  // fewer good ones than we keep: delete nothing
  for (const auto& e : all)
    if (e.step < oldest_kept) {
      fs::remove_all(e.path);
      if (log) log("checkpoint: removed " + e.path + " (checkpoint.keep = " + std::to_string(keep) + ")");
    }
}

std::string checkpoint_dirname(std::int64_t step) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "step-%06lld", static_cast<long long>(step));
  return buf;
}

std::string checkpoint_path(const std::string& dir, std::int64_t step) {
  return (fs::path(dir) / checkpoint_dirname(step)).string();
}

std::string checkpoint_final_path(const std::string& dir, std::int64_t step, const std::string& lineage) {
  const std::string plain = checkpoint_path(dir, step);
  std::error_code ec;
  if (lineage.empty() || !fs::exists(plain, ec) || checkpoint_lineage(plain) == lineage) return plain;
  return plain + "." + lineage;  // step-N belongs to another run (or cannot be read): never over it
}

std::optional<std::string> checkpoint_lineage(const std::string& path) {
  try {
    return read_committed_manifest(path).layout.lineage;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string staging_path(const std::string& dir, std::int64_t step, std::int64_t generation, const std::string& lineage) {
  return checkpoint_path(dir, step) + (lineage.empty() ? "" : "." + lineage) +
         (generation > 0 ? ".g" + std::to_string(generation) : "") + kStagingSuffix;
}

std::string detail::committed_text(std::int64_t step, std::string_view manifest_text) {
  return "duet checkpoint step " + std::to_string(step) + "\nmanifest_xxh64 " + format_hex64(xxh64(manifest_text)) + "\n";
}

ShardRecord write_shard(const ShardRequest& req, const SaveOptions& opt) {
  if (req.layout.world < 1 || req.rank < 0 || req.rank >= req.layout.world)
    throw std::invalid_argument("write_shard: rank " + std::to_string(req.rank) + " outside world " +
                                std::to_string(req.layout.world));
  if (req.step < 0) throw std::invalid_argument("write_shard: negative step");
  validate_slices(req.slices);
  const std::string staging = staging_path(req.dir, req.step, opt.fence.generation, req.layout.lineage);
  std::error_code ec;
  fs::create_directories(staging, ec);  // every rank does this; the first one wins, fine
  if (!fs::is_directory(staging)) throw std::runtime_error("cannot create '" + staging + "': " + ec.message());

  ShardRecord rec;
  rec.rank = req.rank;
  rec.file = shard_file_name(req.rank);
  const std::string path = (fs::path(staging) / rec.file).string();
  const std::string tmp = path + ".tmp";
  try {
    std::function<void()> hook;
    if (opt.before_shard_close) hook = [&] { opt.before_shard_close(req.rank, req.step); };
    write_shard_file(tmp, req.rank, req.step, req.slices, req.state, hook);
    fsync_file(tmp);
    const FileDigest d = hash_file(tmp);  // from the page cache: the bytes just written
    rec.bytes = d.size;
    rec.xxh64 = d.xxh64;
    fs::rename(tmp, path);
  } catch (const std::exception& e) {
    fs::remove(tmp, ec);  // a partial shard would hold the space of a full disk
    throw std::runtime_error("rank " + std::to_string(req.rank) + ": cannot write shard '" + path + "': " + e.what());
  }
  ShardSidecar side;
  side.step = req.step;
  side.layout = req.layout;
  for (const TensorSlice& s : req.slices) {
    rec.slices.push_back({s.name, s.offset, s.shape});
    side.tensors.push_back({s.name, "float32", s.global_shape});
  }
  side.shard = rec;
  write_file_durably((fs::path(staging) / sidecar_name(req.rank)).string(), sidecar_to_json(side));
  return rec;
}

void abort_checkpoint(const std::string& dir, std::int64_t step, std::int64_t generation, const std::string& lineage) {
  std::error_code ec;
  fs::remove_all(staging_path(dir, step, generation, lineage), ec);
}

std::string commit_checkpoint(const std::string& dir, std::int64_t step, const CheckpointLayout& layout,
                              const SaveOptions& opt) {
  const std::string staging = staging_path(dir, step, opt.fence.generation, layout.lineage);
  const std::string final_path = checkpoint_final_path(dir, step, layout.lineage);
  const std::string final_name = fs::path(final_path).filename().string();
  auto reached = [&](CommitStage s) {
    if (opt.at_stage) opt.at_stage(step, s);
    if (opt.crash_after == s) throw CheckpointCrash(std::string("simulated crash after ") + stage_name(s));
  };
  Manifest m;
  std::optional<FenceGuard> fence;  // held from the check until `latest` points at the new checkpoint
  try {
    if (!fs::is_directory(staging))
      throw std::runtime_error("'" + staging + "' does not exist: no rank wrote a shard for step " + std::to_string(step));
    m = merge_sidecars(staging, step, layout);
    reached(CommitStage::shards_checked);

    const std::string index = (fs::path(staging) / kIndexFile).string();
    write_index_file(index + ".tmp", m);
    fsync_file(index + ".tmp");
    const FileDigest d = hash_file(index + ".tmp");
    m.index = {kIndexFile, d.size, d.xxh64};
    fs::rename(index + ".tmp", index);
    reached(CommitStage::index_written);

    const std::string text = manifest_to_json(m);
    write_file_durably((fs::path(staging) / kManifestFile).string(), text);
    remove_strays(staging, m);
    fsync_dir(staging);
    reached(CommitStage::manifest_written);

    write_file_durably((fs::path(staging) / kCommittedFile).string(), committed_text(step, text));
    fsync_dir(staging);
    reached(CommitStage::committed_marker);

    fence.emplace(opt.fence);  // throws when a newer attempt has started: nothing moves
    move_into_place(staging, final_path);
    fsync_dir(dir);
  } catch (const CheckpointCrash&) {
    throw;
  } catch (const std::exception& e) {
    abort_checkpoint(dir, step, opt.fence.generation, layout.lineage);
    throw std::runtime_error("checkpoint " + checkpoint_dirname(step) + " not committed: " + e.what());
  }
  reached(CommitStage::renamed);

  // Committed. What follows only tidies up, so failures are reported, not thrown.
  try {
    replace_symlink(final_name, (fs::path(dir) / kLatestLink).string());
    fsync_dir(dir);
  } catch (const std::exception& e) {
    say(opt, "checkpoint " + checkpoint_dirname(step) + " committed, but 'latest' was not updated: " + e.what());
  }
  reached(CommitStage::latest_updated);
  // Still under the fence: an attempt superseded from here on removes nothing of the newer one's.
  try {
    remove_leftovers(dir, step, layout.lineage, opt);
    rotate_checkpoints(dir, opt.keep, opt.log,
                       layout.lineage.empty() ? std::nullopt : std::optional<std::string>(layout.lineage));
  } catch (const std::exception& e) {
    say(opt, std::string("checkpoint rotation failed (nothing else affected): ") + e.what());
  }
  fence.reset();
  std::uint64_t bytes = 0;
  for (const auto& s : m.shards) bytes += s.bytes;
  say(opt, "checkpoint " + final_path + " committed: " + std::to_string(m.shards.size()) + " shards, " +
               std::to_string(m.tensors.size()) + " tensors, " + std::to_string(bytes >> 20) + " MiB");
  return final_path;
}

SaveResult save_checkpoint(const ShardRequest& req, const AgreeFn& all_agree, const SaveOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  SaveResult r;
  r.step = req.step;
  bool wrote = true;
  try {
    write_shard(req, opt);
  } catch (const std::exception& e) {
    wrote = false;
    r.error = e.what();
  }
  const bool all_wrote = all_agree(wrote);
  bool committed_here = all_wrote;
  if (req.rank == 0) {
    if (!all_wrote) {
      abort_checkpoint(req.dir, req.step, opt.fence.generation, req.layout.lineage);
    } else {
      try {
        r.path = commit_checkpoint(req.dir, req.step, req.layout, opt);
      } catch (const std::exception& e) {
        committed_here = false;
        r.error = e.what();
      }
    }
  }
  r.committed = all_agree(committed_here);
  if (r.committed) {
    if (req.rank != 0) r.path = checkpoint_path(req.dir, req.step);  // rank 0 knows the name it chose
  } else if (r.error.empty()) {
    r.error = all_wrote ? "checkpoint " + checkpoint_dirname(req.step) + " not committed: rank 0 could not commit it (see its log)"
                        : "checkpoint " + checkpoint_dirname(req.step) + " not committed: another rank failed to write its shard";
  }
  if (!r.committed) say(opt, "rank " + std::to_string(req.rank) + ": " + r.error);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::vector<CheckpointEntry> list_checkpoints(const std::string& dir) {
  std::vector<CheckpointEntry> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    // step-N, or step-N.<lineage> (checkpoint_final_path); at most 18 digits: fits int64
    const std::size_t digits_end = std::min(name.find('.'), name.size());
    if (!name.starts_with("step-") || digits_end < 6 || digits_end > 23) continue;
    if (name.find_first_not_of("0123456789", 5) < digits_end) continue;
    if (digits_end < name.size()) {
      const std::string suffix = name.substr(digits_end);
      if (suffix == kStagingSuffix || suffix.ends_with(kStagingSuffix) || suffix.ends_with(".replaced") ||
          suffix.size() < 2 || suffix.find('.', 1) != std::string::npos)
        continue;
    }
    if (!e.is_directory(ec)) continue;
    CheckpointEntry c;
    c.step = std::stoll(name.substr(5, digits_end - 5));
    c.path = e.path().string();
    c.committed = fs::is_regular_file(e.path() / kCommittedFile, ec);
    out.push_back(std::move(c));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return std::tie(a.step, a.path) < std::tie(b.step, b.path); });
  return out;
}

}  // namespace duet::ckpt
