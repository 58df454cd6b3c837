#include "runtime/checkpointing.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>
#include <string_view>

#include "checkpoint/checkpoint.h"
#include "io/resume_policy.h"
#include "kernels/buffer.h"

namespace duet::runtime {

std::string model_hash(const io::RunConfig& cfg) {
  io::RunConfig only_model;
  only_model.model = cfg.model;
  return io::config_hash(only_model);
}

TrainCheckpoints::TrainCheckpoints(const io::RunConfig& cfg, const std::string& run_dir, const core::Topology& topo,
                                   int rank, io::RunLog& log, Communicator& agreement, SaveHooks hooks)
    : cfg_(cfg), dir_(io::checkpoint_dir(cfg, run_dir)), rank_(rank), log_(log), agree_(agreement),
      hooks_(std::move(hooks)) {
  layout_.world = topo.world(), layout_.pp = topo.pp(), layout_.dp = topo.dp(), layout_.ep = topo.ep();
  layout_.schedule = core::format_schedule_kind(cfg.parallel.schedule);
  layout_.config_hash = io::config_hash(cfg);
  layout_.model_hash = model_hash(cfg);
  layout_.lineage = cfg.run.id;  // rotation and resume keep to this run's checkpoints
  if (cfg.checkpoint.async) {
    ckpt::CheckpointWriter::Options o;
    o.dir = dir_, o.rank = rank_, o.layout = layout_;
    // Called from the writer thread: its own communicator, so it never interleaves with the
    // training thread's collectives.
    o.all_agree = [this](bool ok) { return agree_.allreduce<int32_t>(ok ? 1 : 0, ReduceOp::LogicalAnd) != 0; };
    o.save = save_options();
    writer_ = std::make_unique<ckpt::CheckpointWriter>(std::move(o));
  }
}

ckpt::SaveOptions TrainCheckpoints::save_options() {
  ckpt::SaveOptions opt;
  opt.keep = cfg_.checkpoint.keep;
  if (rank_ == 0) opt.log = [this](std::string_view line) { log_.print(std::string(line)); };
  opt.fence = hooks_.fence;
  if (hooks_.shard_written) opt.before_shard_close = [this](int, std::int64_t step) { hooks_.shard_written((int)step); };
  if (hooks_.commit_stage)
    opt.at_stage = [this](std::int64_t step, ckpt::CommitStage s) { hooks_.commit_stage((int)step, s); };
  return opt;
}

void TrainCheckpoints::report(const ckpt::SaveResult& r) {
  all_committed_ = all_committed_ && r.committed;
  if (r.committed && on_commit_) on_commit_((int)r.step);
  if (r.committed)
    last_committed_ = std::max(last_committed_, r.step);
  else
    last_error_ = r.error;
  if (rank_ != 0) return;
  char line[512];
  const auto stall = stalls_.find(r.step);
  if (r.committed && stall != stalls_.end())
    std::snprintf(line, sizeof line, "checkpoint: step %lld saved to %s in %.2f s in the background (training waited %.3f s)",
                  (long long)r.step, r.path.c_str(), r.seconds, stall->second);
  else if (r.committed)
    std::snprintf(line, sizeof line, "checkpoint: step %lld saved to %s in %.2f s", (long long)r.step, r.path.c_str(),
                  r.seconds);
  else
    std::snprintf(line, sizeof line, "checkpoint: step %lld NOT saved: %s (the previous checkpoint is intact)",
                  (long long)r.step, r.error.c_str());
  log_.print(line);
}

double TrainCheckpoints::before_update() {
  if (!writer_) return 0;
  const auto t0 = std::chrono::steady_clock::now();
  writer_->wait_snapshot();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (last_async_step_ >= 0) stalls_[last_async_step_] += s;
  last_async_step_ = -1;
  return s;
}

void TrainCheckpoints::poll() {
  if (!writer_) return;
  while (auto r = writer_->poll()) report(*r);
}

bool TrainCheckpoints::finish() {
  if (writer_)
    while (auto r = writer_->wait()) report(*r);
  return all_committed_;
}

std::string TrainCheckpoints::unsaved() const {
  if (last_requested_ <= last_committed_) return "";
  return "the checkpoint of step " + std::to_string(last_requested_) + " was not saved to " + dir_ + ": " +
         (last_error_.empty() ? std::string("no verdict") : last_error_);
}

std::vector<ckpt::TensorSlice> rank_state_slices(std::vector<RankStage>& stages, ZeroOptimizer& zero) {
  std::vector<ckpt::TensorSlice> slices;
  std::set<std::string> seen;
  for (size_t i = 0; i < stages.size(); ++i) {
    const auto& arena = *stages[i].arena;
    for (const auto& spec : arena.specs()) {
      std::vector<int64_t> zero_offset(spec.shape.size(), 0);
      slices.push_back({spec.name, spec.shape, zero_offset, spec.shape,
                        arena.params().subspan(spec.offset, spec.numel())});
    }
    auto& adam = zero.adam((int)i);
    for (const auto& piece : adam.owned_pieces(arena)) {
      if (!seen.insert(piece.spec->name).second)
        throw std::logic_error("checkpoint: this rank owns two separate ZeRO-1 pieces of " + piece.spec->name +
                               " (ZeRO buckets never cut a tensor, so this is a bug)");
      const std::vector<int64_t> global = {piece.spec->numel()}, off = {piece.begin - piece.spec->offset},
                                 len = {piece.end - piece.begin};
      slices.push_back({"opt.m/" + piece.spec->name, global, off, len,
                        std::span<const float>(adam.m().data() + piece.moment, piece.end - piece.begin)});
      slices.push_back({"opt.v/" + piece.spec->name, global, off, len,
                        std::span<const float>(adam.v().data() + piece.moment, piece.end - piece.begin)});
    }
  }
  return slices;
}

std::vector<ckpt::TensorSlice> host_copies(const std::vector<ckpt::TensorSlice>& slices,
                                           std::vector<std::vector<float>>& storage) {
  const kernels::Backend& backend = kernels::compute_backend();
  storage.assign(slices.size(), {});
  std::vector<ckpt::TensorSlice> out = slices;
  for (size_t i = 0; i < slices.size(); ++i) {
    storage[i].resize(slices[i].data.size());
    backend.copy_to_host(storage[i].data(), slices[i].data.data(), slices[i].data.size_bytes());
    out[i].data = storage[i];
  }
  return out;
}

ckpt::ShardState rank_shard_state(const io::RunConfig& cfg, int rank, int64_t data_position, ZeroOptimizer& zero) {
  ckpt::ShardState state;
  state.data_position = data_position;
  state.attributes["optimizer_steps"] = std::to_string(zero.adam(0).steps_taken());
  if (rank == 0) state.attributes["config"] = io::to_yaml(cfg);  // what a resume is checked against
  return state;
}

long saved_optimizer_steps(const std::map<std::string, std::string>& attributes, const std::string& where) {
  const auto it = attributes.find("optimizer_steps");
  const std::string text = it == attributes.end() ? "" : it->second;
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos)
    throw std::runtime_error(where + ": its state has no optimizer step count (attribute 'optimizer_steps' " +
                             (it == attributes.end() ? std::string("missing") : "is '" + text + "'") +
                             "): not a checkpoint duet can resume from");
  return std::stol(text);
}

void load_rank_state(std::vector<RankStage>& stages, ZeroOptimizer& zero, long optimizer_steps,
                     const std::function<std::vector<float>(const std::string&)>& read_whole,
                     const std::function<void(const std::string&, int64_t, std::span<float>)>& read_range,
                     const std::string& where) {
  for (size_t i = 0; i < stages.size(); ++i) {
    auto& arena = *stages[i].arena;
    for (const auto& spec : arena.specs()) {
      const std::vector<float> v = read_whole(spec.name);
      if ((int64_t)v.size() != spec.numel())
        throw std::runtime_error(where + ": tensor " + spec.name + " has the wrong size");
      std::copy(v.begin(), v.end(), arena.params().begin() + spec.offset);
    }
    auto& adam = zero.adam((int)i);
    for (const auto& piece : adam.owned_pieces(arena)) {
      const int64_t off = piece.begin - piece.spec->offset, len = piece.end - piece.begin;
      // Through host memory, as the parameters above: the moments are the backend's memory
      // (managed memory on CUDA), which some GPU sandboxes refuse to a system call (the file
      // read; EFAULT), and the copy is nothing next to the read.
      std::vector<float> host((size_t)len);
      read_range("opt.m/" + piece.spec->name, off, host);
      std::copy(host.begin(), host.end(), adam.m().data() + piece.moment);
      read_range("opt.v/" + piece.spec->name, off, host);
      std::copy(host.begin(), host.end(), adam.v().data() + piece.moment);
    }
    adam.set_steps_taken(optimizer_steps);
  }
}

bool TrainCheckpoints::save(int step, std::vector<RankStage>& stages, ZeroOptimizer& zero) {
  last_requested_ = step;
  const std::vector<ckpt::TensorSlice> slices = rank_state_slices(stages, zero);
  const ckpt::ShardState state =
      rank_shard_state(cfg_, rank_, data_position_of_ ? data_position_of_(step) : (int64_t)step * cfg_.train.global_batch, zero);
  if (writer_) {
    // The copy happens on the writer thread; before_update() waits for it.
    const auto t0 = std::chrono::steady_clock::now();
    writer_->save_async(step, slices, state, ckpt::Snapshot::deferred);  // waits if one is writing
    stalls_[step] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    last_async_step_ = step;
    return true;
  }
  ckpt::ShardRequest req;
  req.dir = dir_, req.step = step, req.rank = rank_, req.layout = layout_, req.slices = slices;
  // A synchronous save hands HDF5 host memory only, as the asynchronous one (its own buffers)
  // and the load (through a host vector) do: on a device backend the tensors are its memory,
  // which a system call may not be able to read (docs/gpu.md: EFAULT on managed memory).
  std::vector<std::vector<float>> host;
  std::vector<ckpt::TensorSlice> host_slices;  // req.slices is a view: these must outlive the save
  if (std::string_view(kernels::compute_backend().name) != "cpu") req.slices = host_slices = host_copies(slices, host);
  req.state = state;
  const ckpt::SaveOptions opt = save_options();
  const auto agree = [&](bool ok) { return agree_.allreduce<int32_t>(ok ? 1 : 0, ReduceOp::LogicalAnd) != 0; };
  const ckpt::SaveResult r = ckpt::save_checkpoint(req, agree, opt);
  report(r);
  return r.committed;
}

// Every rank verifies the checkpoints itself, and a read error on one rank alone (an NFS
// client, a flaky link) makes it reject a checkpoint the others accept: the ranks would then
// load different steps, and the job would fail or hang. So they agree: the oldest step any
// rank found, which each rank then looks for at or below that step, until all hold the same.
ckpt::ResumePoint TrainCheckpoints::agreed_resume_point() {
  ckpt::VerifyOptions vo;
  vo.model_hash = layout_.model_hash;
  if (!layout_.lineage.empty()) vo.lineage = layout_.lineage;
  std::vector<std::string> rejected;  // this rank's lines; rank 0 logs its own as it goes
  auto search = [&](std::optional<int64_t> at_most) {
    if (hooks_.unreadable_from >= 0) {  // fault injection: as if those failed to read here
      const int64_t below = hooks_.unreadable_from - 1;
      if (!at_most || *at_most > below) {
        rejected.push_back("fault injection: rank " + std::to_string(rank_) + " cannot read checkpoints of step " +
                           std::to_string(hooks_.unreadable_from) + " or newer");
        if (rank_ == 0) log_.print(rejected.back());
      }
      at_most = std::min(at_most.value_or(below), below);
    }
    vo.at_most = at_most;
    return ckpt::find_resumable_checkpoint(dir_, vo, [&](std::string_view line) {
      rejected.emplace_back(line);
      if (rank_ == 0) log_.print(std::string(line));
    });
  };
  const int world = agree_.size();
  auto steps_found = [&](const ckpt::ResumePoint& p) {  // each rank's step (-1: none), to every rank
    std::vector<int64_t> steps((size_t)world, std::numeric_limits<int64_t>::min());
    steps[(size_t)rank_] = p.found() ? p.step : -1;
    agree_.allreduce(std::span<int64_t>(steps), ReduceOp::Max);
    return steps;
  };
  ckpt::ResumePoint at = search(std::nullopt);
  const std::vector<int64_t> found = steps_found(at);
  const auto [lo, hi] = std::minmax_element(found.begin(), found.end());
  if (*lo == *hi) return at;
  // The ranks that disagree with rank 0 say why on their own output (rank 0's lines are in the log).
  if (rank_ != 0 && found[(size_t)rank_] != found[0])
    for (const auto& line : rejected) std::fprintf(stderr, "rank %d: %s\n", rank_, line.c_str());
  std::string per_rank;
  for (int r = 0; r < world; ++r)
    if (found[(size_t)r] != *hi)
      per_rank += (per_rank.empty() ? "" : ", ") + std::string("rank ") + std::to_string(r) + " " +
                  (found[(size_t)r] < 0 ? std::string("none") : "step " + std::to_string(found[(size_t)r]));
  const std::string disagreement = "the ranks verified different newest checkpoints (step " + std::to_string(*hi) +
                                   " on the others; " + per_rank + ")";
  const std::runtime_error none_on_every_rank(
      "checkpoint: " + disagreement + ": no checkpoint verifies on every rank, and starting afresh would train " +
      "again what the run's checkpoints hold; run again once every rank reads " + dir_ + " (duet launch restarts by itself)");
  if (*lo < 0) throw none_on_every_rank;
  if (rank_ == 0)
    log_.print("checkpoint: " + disagreement + ": every rank resumes from the newest all of them verify, at most step " +
               std::to_string(*lo));
  for (int64_t agreed = *lo;;) {
    if (!at.found() || at.step != agreed) at = search(agreed);
    const std::vector<int64_t> now = steps_found(at);
    const int64_t low = *std::min_element(now.begin(), now.end()), high = *std::max_element(now.begin(), now.end());
    if (low == high && low >= 0) return at;
    if (low < 0) throw none_on_every_rank;
    agreed = low;
  }
}

int TrainCheckpoints::resume(std::vector<RankStage>& stages, ZeroOptimizer& zero, int unless_at_most) {
  if (!cfg_.checkpoint.resume) {
    if (rank_ == 0 && !layout_.lineage.empty()) {  // still say whose checkpoints are there
      std::string list;
      for (const auto& e : ckpt::list_checkpoints(dir_))
        if (const auto l = ckpt::checkpoint_lineage(e.path); l && *l != layout_.lineage)
          list += (list.empty() ? "" : ", ") + std::filesystem::path(e.path).filename().string() + " (run " + *l + ")";
      if (!list.empty())
        log_.print("checkpoint: " + dir_ + " also holds checkpoints of other runs, never loaded, replaced or deleted by this one: " + list);
    }
    return 0;
  }
  const ckpt::ResumePoint at = agreed_resume_point();
  if (rank_ == 0 && !at.foreign.empty()) {
    std::string list;
    for (const auto& f : at.foreign) list += (list.empty() ? "" : ", ") + f;
    log_.print("checkpoint: " + dir_ + " also holds checkpoints of other runs, never loaded, replaced or deleted by this one: " + list);
  }
  if (unless_at_most >= 0 && (!at.found() || at.step <= unless_at_most)) {
    if (rank_ == 0 && at.found())
      log_.print("checkpoint: " + at.path + " (step " + std::to_string(at.step) +
                 ") is not newer than the in-memory snapshot of step " + std::to_string(unless_at_most));
    return -1;
  }
  if (!at.found()) return 0;
  const auto load_start = std::chrono::steady_clock::now();
  ckpt::CheckpointReader reader(at.path, layout_.model_hash);
  const auto saved = reader.state(0).attributes;
  data_position_ = reader.state(0).data_position;
  if (const auto c = saved.find("config"); c != saved.end()) {  // checkpoints before lineages have none
    const auto changes = io::check_resume(io::parse_config(c->second, {}, at.path + " config"), cfg_, "the checkpoint " + at.path);
    if (rank_ == 0 && !changes.empty()) {
      std::string list;
      for (const auto& x : changes) list += (list.empty() ? "" : "; ") + x;
      log_.print("resuming with changes (checkpoint.allow_changes): " + list);
    }
  }
  load_rank_state(
      stages, zero, saved_optimizer_steps(reader.state(0).attributes, "checkpoint " + at.path),
      [&](const std::string& name) { return reader.read(name); },
      [&](const std::string& name, int64_t off, std::span<float> out) {
        const std::vector<int64_t> o = {off}, l = {(int64_t)out.size()};
        reader.read(name, o, l, out);
      },
      "checkpoint " + at.path);
  char read_time[32];
  std::snprintf(read_time, sizeof read_time, "%.2f s",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count());
  if (rank_ == 0)
    log_.print("resuming from " + at.path + " (step " + std::to_string(at.step) + ", written by " +
               std::to_string(reader.manifest().layout.world) + " ranks: PP " +
               std::to_string(reader.manifest().layout.pp) + " x DP " + std::to_string(reader.manifest().layout.dp) +
               ", " + reader.manifest().layout.schedule + "; read in " + read_time + ")");
  return (int)at.step;
}

}  // namespace duet::runtime
