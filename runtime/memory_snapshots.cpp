#include "runtime/memory_snapshots.h"

#include <pthread.h>
#include <sched.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "core/supervision.h"
#include "io/resume_policy.h"
#include "runtime/checkpointing.h"
#include "runtime/memory_estimate.h"  // local_ranks

namespace duet::runtime {

namespace fs = std::filesystem;

namespace {

double mib(std::uint64_t bytes) { return (double)bytes / (1 << 20); }

std::string host_name() {
  char b[256] = {};
  ::gethostname(b, sizeof b - 1);
  return b;
}

// Ranks per node: the logical nodes' (the supervisor's environment), launch.ranks_per_node,
// else what mpirun/srun say share this host.
int ranks_per_node(const io::RunConfig& cfg) {
  if (const char* s = std::getenv(core::kRanksPerNodeEnv); s && std::atoi(s) > 0) return std::atoi(s);
  if (cfg.launch.ranks_per_node > 0) return cfg.launch.ranks_per_node;
  return local_ranks();
}

// Free bytes of the folder's file system (shared memory: what tmpfs still has).
std::uint64_t free_bytes(const std::string& dir) {
  struct statvfs s {};
  if (::statvfs(dir.c_str(), &s) != 0) return 0;
  return (std::uint64_t)s.f_bavail * s.f_frsize;
}

constexpr int kTagSize = 7001, kTagBytes = 7002;

double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

}  // namespace

std::string memory_snapshot_dir(const io::RunConfig& cfg) {
  if (!cfg.checkpoint.memory_dir.empty()) return cfg.checkpoint.memory_dir;
  if (const char* e = std::getenv(kMemoryDirEnv); e && *e) return e;
  return "/dev/shm";
}

std::uint64_t memory_snapshot_need(std::uint64_t largest_rank_bytes, int ranks_per_node) {
  return (std::uint64_t)std::max(ranks_per_node, 1) * 2 /* slots */ * 2 /* own + replica */ *
         ckpt::snapshot_slot_bytes(largest_rank_bytes);
}

namespace {

// The room the snapshots have in `base`: checkpoint.memory_limit, else the folder's free space
// plus what this run's snapshots already use there (they are replaced, not added to). 0 when
// the folder cannot be created.
std::uint64_t snapshot_room(const io::RunConfig& cfg, const std::string& base) {
  std::error_code ec;
  fs::create_directories(base, ec);
  if (ec) return 0;
  if (cfg.checkpoint.memory_limit > 0) return cfg.checkpoint.memory_limit;
  return free_bytes(base) + (cfg.run.id.empty() ? 0 : ckpt::folder_bytes(ckpt::snapshot_run_dir(base, cfg.run.id)));
}

std::string too_little_room(const io::RunConfig& cfg, const std::string& base, int per_node, std::uint64_t largest,
                            std::uint64_t need, std::uint64_t room) {
  char why[400];
  std::snprintf(why, sizeof why,
                "they need %.1f MiB per node in %s (%d rank(s) x 2 slots x own + peer copy of %.1f MiB), %s %.1f MiB",
                mib(need), base.c_str(), per_node, mib(largest),
                cfg.checkpoint.memory_limit > 0 ? "checkpoint.memory_limit allows" : "it has", mib(room));
  return why;
}

std::string refusal(const std::string& why) {
  return "checkpoint.memory: on, but " + why +
         " (set checkpoint.memory_dir or checkpoint.memory_limit, or checkpoint.memory: auto to continue with HDF5 "
         "checkpoints alone, or off)";
}

}  // namespace

MemorySnapshots::MemorySnapshots(const io::RunConfig& cfg, const core::Topology& topo, int rank, io::RunLog& log,
                                 Communicator& comm, ckpt::Fence fence, bool supervised,
                                 std::vector<RankStage>& stages, ZeroOptimizer& zero)
    : cfg_(cfg), rank_(rank), world_(topo.world()), log_(log), comm_(comm), fence_(std::move(fence)) {
  const io::MemorySnapshots mode = cfg.checkpoint.memory;
  if (mode == io::MemorySnapshots::Off || (mode == io::MemorySnapshots::Auto && !supervised)) return;
  const bool required = mode == io::MemorySnapshots::On;
  auto refuse_or_warn = [&](const std::string& why) {
    if (required) throw io::AgreedConfigError(refusal(why));
    if (rank_ == 0) log_.print("warning: in-memory snapshots are off: " + why + "; continuing with HDF5 checkpoints alone");
  };
  if (cfg.run.id.empty()) {  // every rank sees the same config
    refuse_or_warn("the run has no lineage id (run.id) to keep them apart from other runs'");
    return;
  }
  const std::string base = memory_snapshot_dir(cfg);
  per_node_ = std::min(ranks_per_node(cfg), world_);
  node_ = core::logical_node_of(rank);
  if (node_.empty()) node_ = host_name();
  // Replicas go to rank + ranks-per-node and each node's first rank scans for all of its
  // ranks: that needs whole blocks of ranks per node (rank r on node r / per_node, the same
  // count everywhere), which every rank checks with the others.
  {
    std::vector<int64_t> ids(world_ + 2, 0);
    ids[rank_] = (int64_t)(std::hash<std::string>{}(node_) >> 1) + 1;  // never 0
    ids[world_] = per_node_, ids[world_ + 1] = -per_node_;                // max, -min
    comm_.allreduce(std::span<int64_t>(ids.data(), world_), ReduceOp::Sum);
    comm_.allreduce(std::span<int64_t>(ids.data() + world_, 2), ReduceOp::Max);
    std::string bad;
    if (ids[world_] != -ids[world_ + 1])
      bad = "ranks per node differ between ranks (" + std::to_string(-ids[world_ + 1]) + " to " +
            std::to_string(ids[world_]) + ")";
    else if (world_ % per_node_ != 0)
      bad = std::to_string(per_node_) + " ranks per node do not divide the " + std::to_string(world_) + " ranks";
    for (int r = 0; bad.empty() && r < world_; ++r)
      if (ids[r] != ids[r / per_node_ * per_node_])
        bad = "rank " + std::to_string(r) + " is not on the node of rank " + std::to_string(r / per_node_ * per_node_) +
              " (ranks must be placed in blocks of " + std::to_string(per_node_) + " per node: mpirun --map-by core/slot)";
    if (!bad.empty()) {
      refuse_or_warn("they need every node to hold a whole block of ranks, but " + bad);
      return;
    }
  }

  // The most any rank keeps, agreed by all: every node needs its ranks × 2 slots × (own + one
  // peer's replica) of it.
  std::uint64_t bytes = 1 << 20;  // header, names, the config text of rank 0
  for (const auto& s : rank_state_slices(stages, zero)) bytes += s.data.size_bytes() + 64 + s.name.size() + 48 * s.shape.size();
  const auto largest = (std::uint64_t)comm_.allreduce<int64_t>((int64_t)bytes, ReduceOp::Max);
  const std::uint64_t need = memory_snapshot_need(largest, per_node_);
  const std::string run_dir = ckpt::snapshot_run_dir(base, cfg.run.id);
  const std::uint64_t have = snapshot_room(cfg, base);
  // The smallest over the nodes (Max of the negation): every rank decides the same.
  const auto room = (std::uint64_t)(-comm_.allreduce<int64_t>(-(int64_t)std::min<std::uint64_t>(have, INT64_MAX), ReduceOp::Max));
  if (room < need) {
    refuse_or_warn(too_little_room(cfg, base, per_node_, largest, need, room));
    return;
  }
  enabled_ = true;
  std::error_code ec;
  run_dir_ = run_dir, node_dir_ = run_dir_ + "/" + node_;
  owner_ = std::make_unique<ckpt::SnapshotOwnerLock>(run_dir_);
  fs::create_directories(node_dir_, ec);
  if (rank_ % per_node_ == 0)  // one rank per node: runs that died without cleaning up
    for (const auto& dead : ckpt::reclaim_dead_snapshots(base, cfg.run.id))
      log_.print("memory snapshots: reclaimed " + dead + " (no live process of its run holds it)");
  if (world_ > per_node_) peer_to_ = (rank_ + per_node_) % world_, peer_from_ = (rank_ - per_node_ + world_) % world_;
  for (int k = 0; k < 2; ++k) {
    own_[k] = std::make_unique<ckpt::SnapshotSlot>(node_dir_ + "/" + ckpt::snapshot_file_name(rank_, k));
    if (peer_from_ >= 0)
      replica_[k] = std::make_unique<ckpt::SnapshotSlot>(node_dir_ + "/" + ckpt::snapshot_file_name(peer_from_, k));
  }
  meta_.lineage = cfg.run.id, meta_.generation = fence_.generation, meta_.rank = rank_, meta_.node = node_;
  meta_.layout.world = topo.world(), meta_.layout.pp = topo.pp(), meta_.layout.dp = topo.dp(), meta_.layout.ep = topo.ep();
  meta_.layout.schedule = core::format_schedule_kind(cfg.parallel.schedule);
  meta_.layout.model_hash = model_hash(cfg), meta_.layout.lineage = cfg.run.id;
  if (rank_ == 0) {
    char line[600];
    std::snprintf(line, sizeof line,
                  "memory snapshots: every %d step(s) in %s/<node>, %s; at most %.1f MiB per rank, %.1f MiB per node "
                  "(2 slots, own + peer copy; %.1f MiB available)",
                  cfg.checkpoint.memory_every, run_dir_.c_str(),
                  peer_to_ >= 0 ? ("each rank's replica on the next node (rank + " + std::to_string(per_node_) + ")").c_str()
                                : "one node: no peer replica",
                  mib(largest), mib(need), mib(room));
    log_.print(line);
  }
  thread_ = std::thread([this] { run(); });
}

MemorySnapshots::~MemorySnapshots() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

int MemorySnapshots::find() {
  if (!enabled_) return -1;
  // Each node's first rank verifies what its node holds — on separate hosts no other rank can
  // see those files — and every rank receives every node's list, so all choose the same set.
  ckpt::SnapshotSearch search;
  search.lineage = cfg_.run.id, search.below_generation = fence_.generation, search.model_hash = meta_.layout.model_hash;
  std::vector<ckpt::SnapshotCandidate> all;
  for (int lead = 0; lead < world_; lead += per_node_) {
    std::string text;  // the skipped files' lines, a NUL, the candidates
    if (rank_ == lead) {
      std::string lines;
      scanned_ =
          ckpt::scan_snapshot_folder(node_dir_, rank_, search, [&](std::string_view l) { lines += std::string(l) + "\n"; });
      text = lines + '\0' + ckpt::format_snapshot_candidates(*scanned_);
    }
    comm_.broadcast(text, lead);
    const std::size_t nul = text.find('\0');
    if (nul == std::string::npos) throw std::runtime_error("memory snapshots: a malformed list from rank " + std::to_string(lead));
    if (rank_ == 0)
      for (std::size_t at = 0; at < nul;) {
        const std::size_t end = text.find('\n', at);
        log_.print(text.substr(at, end - at));
        at = end + 1;
      }
    auto some = ckpt::parse_snapshot_candidates(text.substr(nul + 1));
    all.insert(all.end(), std::make_move_iterator(some.begin()), std::make_move_iterator(some.end()));
  }
  found_ = ckpt::choose_snapshot_set(std::move(all));
  if (!found_.found() || found_.step <= 0) {
    if (rank_ == 0) log_.print("memory snapshots: none complete in " + run_dir_ + " for this run");
    found_ = {};
    return -1;
  }
  return (int)found_.step;
}

int MemorySnapshots::load(std::vector<RankStage>& stages, ZeroOptimizer& zero) {
  if (!found_.found()) throw std::logic_error("MemorySnapshots::load without a snapshot found");
  const auto t0 = std::chrono::steady_clock::now();
  const ckpt::SnapshotSet& set = found_;
  const int writers = (int)set.paths.size();
  // In the layout that wrote it, this rank needs only its own rank's snapshot; in another, it
  // may need any tensor of any rank. A file in this rank's node folder is read here; one on
  // another node is sent by the rank that found it there (a lost node's replicas, after a
  // shrink onto several nodes).
  const auto& l = set.layout;
  const bool same_layout = l.world == world_ && l.pp == meta_.layout.pp && l.dp == meta_.layout.dp &&
                           l.ep == meta_.layout.ep && l.schedule == meta_.layout.schedule;
  auto here = [&](int w) { return set.holders[w] / per_node_ == rank_ / per_node_; };
  std::vector<int64_t> fetch(writers, 0);
  for (int w = 0; w < writers; ++w)
    if ((same_layout ? w == rank_ : true) && !here(w)) fetch[w] = 1;
  comm_.allreduce(std::span<int64_t>(fetch), ReduceOp::Max);
  std::vector<ckpt::SnapshotFile> files;
  int fetched = 0;
  for (int w = 0; w < writers; ++w) {
    const bool need = same_layout ? w == rank_ : true;
    std::string why;
    if (fetch[w]) {  // collective: the holder sends the snapshot's bytes to every rank
      std::string bytes;
      if (rank_ == set.holders[w]) {
        if (auto f = ckpt::read_snapshot(set.paths[w], &why)) {
          std::uint64_t payload = 0;  // the slot's spare room is not sent
          std::memcpy(&payload, f->bytes.data() + 8, 8);
          bytes.assign((const char*)f->bytes.data(),
                       std::min(f->bytes.size(), ckpt::kSnapshotHeaderBytes + (std::size_t)payload));
        } else {
          bytes = "!" + why;  // not a snapshot's first byte: the receivers say why
        }
      }
      comm_.broadcast(bytes, set.holders[w]);
      ++fetched;
      if (!bytes.empty() && bytes[0] == '!')
        throw std::runtime_error("memory snapshots: rank " + std::to_string(set.holders[w]) + " could not read " +
                                 set.paths[w] + " to send it: " + bytes.substr(1) + " (it verified a moment ago)");
      if (!need) continue;
      if (here(w)) {
        bytes.clear();  // read below, like the others of this node
      } else {
        std::vector<std::byte> b(bytes.size());
        std::memcpy(b.data(), bytes.data(), bytes.size());
        auto f = ckpt::decode_snapshot(std::move(b), &why);
        if (!f) throw std::runtime_error("memory snapshots: rank " + std::to_string(w) + "'s snapshot from rank " +
                                         std::to_string(set.holders[w]) + " (" + set.paths[w] + "): " + why);
        files.push_back(std::move(*f));
        continue;
      }
    }
    if (!need) continue;
    auto f = ckpt::read_snapshot(set.paths[w], &why);
    if (!f) throw std::runtime_error("memory snapshots: " + set.paths[w] + ": " + why + " (it verified a moment ago)");
    files.push_back(std::move(*f));
  }
  ckpt::SnapshotReader reader(std::move(files));
  const auto& saved = reader.state(0).attributes;
  data_position_ = reader.state(0).data_position;
  const std::string where = "the in-memory snapshot of step " + std::to_string(set.step);
  if (const auto c = saved.find("config"); c != saved.end()) {
    const auto changes = io::check_resume(io::parse_config(c->second, {}, where + " config"), cfg_, where);
    if (rank_ == 0 && !changes.empty()) {
      std::string list;
      for (const auto& x : changes) list += (list.empty() ? "" : "; ") + x;
      log_.print("resuming with changes (checkpoint.allow_changes): " + list);
    }
  }
  load_rank_state(
      stages, zero, saved_optimizer_steps(saved, where),
      [&](const std::string& name) { return reader.read(name); },
      [&](const std::string& name, int64_t off, std::span<float> out) { reader.read_range(name, off, out); }, where);
  if (rank_ == 0) {
    char line[700];
    std::snprintf(line, sizeof line,
                  "resuming from the in-memory snapshot of step %lld in %s (attempt generation %lld, written by %d ranks: "
                  "PP %d x DP %d, %s; %d own copies, %d peer replicas; %s; read in %.2f s)",
                  (long long)set.step, run_dir_.c_str(), (long long)set.generation, l.world, l.pp, l.dp,
                  l.schedule.c_str(), set.own_copies, set.replicas,
                  fetched ? (std::to_string(fetched) + " sent from another node").c_str()
                          : (same_layout ? "each rank read its own" : "all read on their nodes"),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    log_.print(line);
  }
  return (int)set.step;
}

void MemorySnapshots::discard_newer_than(int step) {
  if (!enabled_ || rank_ % per_node_ != 0) return;
  // find() verified this folder a moment ago (when the run resumes at all): not read again.
  ckpt::SnapshotSearch search;
  search.lineage = cfg_.run.id, search.below_generation = fence_.generation;
  const auto removed = (scanned_ ? ckpt::discard_snapshots_after(*scanned_, step)
                                 : ckpt::discard_snapshots_after(node_dir_, search, step))
                           .size();
  scanned_.reset();
  if (removed > 0)
    log_.print("memory snapshots: removed " + std::to_string(removed) + " snapshot(s) of earlier attempts after step " +
               std::to_string(step) + " from " + node_dir_ + " (this attempt trains from step " + std::to_string(step) +
               ")");
}

double MemorySnapshots::save(int step, std::vector<RankStage>& stages, ZeroOptimizer& zero) {
  if (!enabled_ || step % cfg_.checkpoint.memory_every != 0) return 0;
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock lk(mu_);
  wait_for_job(lk);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  views_ = rank_state_slices(stages, zero);
  state_ = rank_shard_state(cfg_, rank_, data_position_of_ ? data_position_of_(step) : (int64_t)step * cfg_.train.global_batch,
                            zero);
  job_step_ = step, has_job_ = true;
  lk.unlock();
  cv_.notify_all();
  return waited;
}

double MemorySnapshots::before_update() {
  if (!enabled_) return 0;
  // The whole snapshot, not only its copy: once any rank is past this point of step s, every
  // rank's snapshot of step s - 1 is written and replicated (the step's all-reduces follow),
  // so a failure loses at most the step that was running and the one before it was saved in.
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock lk(mu_);
  wait_for_job(lk);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void MemorySnapshots::wait_for_job(std::unique_lock<std::mutex>& lk) {
  if (!has_job_) return;
  set_idle_priority(thread_.native_handle(), false);  // the training waits for it now: it must not starve
  cv_.wait(lk, [&] { return !has_job_; });
}

void MemorySnapshots::set_idle_priority(pthread_t thread, bool idle) {
  sched_param p{};
  p.sched_priority = 0;
  pthread_setschedparam(thread, idle ? SCHED_IDLE : SCHED_OTHER, &p);
}

void MemorySnapshots::run() {
  // Only the time its core would otherwise idle (the training thread waiting for a message, or
  // for this thread before the next optimizer step): woken at normal priority it would preempt
  // the compute thread of a rank bound to the core, and a pipeline passes that delay on to the
  // other ranks.
  // But a core is never idle on a machine shared with other busy processes: when the training
  // thread has to wait for the snapshot, it raises this thread to normal priority
  // (wait_for_job), and the thread drops back with each new job.
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return has_job_ || stop_; });
    if (!has_job_) return;
    set_idle_priority(pthread_self(), true);
    const int step = job_step_;
    lk.unlock();
    const auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = thread_cpu_seconds();
    write_one(step);
    last_cpu_s_ = thread_cpu_seconds() - cpu0;
    last_wall_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    lk.lock();
    has_job_ = false;
    cv_.notify_all();
  }
}

void MemorySnapshots::write_one(int step) {
  auto failed = [&](const std::exception& e) {
    if (!first_error_.empty()) return;  // said once; the next snapshots try again
    first_error_ = e.what();
    log_.print("memory snapshots: rank " + std::to_string(rank_) + " could not keep step " + std::to_string(step) +
               ": " + first_error_);
  };
  auto round4 = [](std::uint64_t n) { return (n + 3) / 4 * 4; };
  meta_.step = step;
  const int slot = ckpt::snapshot_slot(step, cfg_.checkpoint.memory_every);
  // [total bytes, payload bytes, payload XXH64]; total 0: nothing to send this time.
  std::uint64_t out_head[3] = {0, 0, 0}, in_head[3] = {0, 0, 0};
  std::span<std::byte> mine;
  try {
    const std::size_t size = ckpt::encoded_snapshot_size(meta_, views_, state_);
    mine = own_[slot]->open_for(ckpt::kSnapshotHeaderBytes + round4(size - ckpt::kSnapshotHeaderBytes), fence_);
    const ckpt::SnapshotHeader h = ckpt::encode_snapshot_payload(mine, meta_, views_, state_);
    own_[slot]->publish(h, fence_);
    out_head[0] = size, out_head[1] = h.payload, out_head[2] = h.xxh64;
  } catch (const std::exception& e) {
    failed(e);
  }
  if (peer_to_ >= 0) {
    // The header first (three int64s in six floats' bits), then the payload, padded to whole
    // floats, from this rank's mapped slot into the peer's.
    {
      Request reqs[2] = {comm_.irecv(std::span<float>(reinterpret_cast<float*>(in_head), 6), peer_from_, kTagSize),
                         comm_.isend(std::span<const float>(reinterpret_cast<const float*>(out_head), 6), peer_to_,
                                     kTagSize)};
      wait_all(reqs);
    }
    std::vector<Request> reqs;
    std::span<std::byte> theirs;
    if (in_head[0] > 0) {
      const std::size_t in_floats = round4(in_head[1]) / 4;
      try {
        theirs = replica_[slot]->open_for(ckpt::kSnapshotHeaderBytes + in_floats * 4, fence_);
      } catch (const std::exception& e) {
        failed(e);
      }
      std::span<float> into;
      if (!theirs.empty()) {
        into = {reinterpret_cast<float*>(theirs.data() + ckpt::kSnapshotHeaderBytes), in_floats};
      } else {
        spill_.resize(in_floats);
        into = spill_;
      }
      reqs.push_back(comm_.irecv(into, peer_from_, kTagBytes));
    }
    if (out_head[0] > 0)
      reqs.push_back(comm_.isend(std::span<const float>(reinterpret_cast<const float*>(mine.data() +
                                                                                           ckpt::kSnapshotHeaderBytes),
                                                        round4(out_head[1]) / 4),
                                 peer_to_, kTagBytes));
    wait_all(reqs);
    if (!theirs.empty()) {
      try {
        replica_[slot]->publish({in_head[1], in_head[2]}, fence_);
      } catch (const std::exception& e) {
        failed(e);
      }
    }
  }
  // Once this attempt's snapshots are complete (its second), files of other ranks in this
  // node's folder (an earlier layout's, before a shrink) are dead weight: each node's first
  // rank removes them; rank 0 reports the memory the run's snapshots use.
  if (rank_ % per_node_ == 0 && !cleaned_ && ++saves_ == 2) {
    cleaned_ = true;
    std::vector<bool> keep(world_, false);
    for (int r = rank_; r < std::min(rank_ + per_node_, world_); ++r) {
      keep[r] = true;
      if (peer_from_ >= 0) keep[(r - per_node_ + world_) % world_] = true;
    }
    std::error_code ec;
    for (const auto& f : fs::directory_iterator(node_dir_, ec)) {
      const std::string name = f.path().filename().string();
      if (name.rfind("rank-", 0) != 0) continue;
      const int r = std::atoi(name.c_str() + 5);
      if (r < 0 || r >= world_ || !keep[r]) fs::remove(f.path(), ec);
    }
    if (rank_ == 0) {
      char line[300];
      std::snprintf(line, sizeof line, "memory snapshots: %.1f MiB in use under %s", mib(ckpt::folder_bytes(run_dir_)),
                    run_dir_.c_str());
      log_.print(line);
    }
  }
}

void MemorySnapshots::finish(bool remove) {
  if (!enabled_) return;
  before_update();
  for (int k = 0; k < 2; ++k) {  // unmapped: a removed file's memory is freed at once
    own_[k]->close();
    if (replica_[k]) replica_[k]->close();
  }
  if (!remove) return;
  comm_.barrier();  // nobody writes any more
  // The folder is the run's, not the attempt's: a superseded attempt (checkpoint/fence.h) leaves
  // it to the newer one, whose snapshots it holds. Each removal holds the fence's shared lock.
  auto remove_if_owner = [&](const std::string& dir) {
    try {
      const ckpt::FenceGuard owner(fence_);
      std::error_code ec;
      fs::remove_all(dir, ec);
      return true;
    } catch (const std::runtime_error& e) {
      log_.print("memory snapshots: " + dir + " left in place: " + e.what());
      return false;
    }
  };
  bool removed = true;
  if (rank_ % per_node_ == 0) removed = remove_if_owner(node_dir_);
  comm_.barrier();
  if (rank_ % per_node_ == 0 && removed) removed = remove_if_owner(run_dir_);
  if (rank_ == 0 && removed) log_.print("memory snapshots: removed " + run_dir_ + " (the run is over)");
}

}  // namespace duet::runtime
