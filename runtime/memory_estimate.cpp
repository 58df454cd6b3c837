#include "runtime/memory_estimate.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include "io/read_limited.h"
#include "model/tensor_spec.h"
#include "runtime/train_setup.h"
#include "scheduler/placement.h"

namespace duet::runtime {

namespace {

// Saturating arithmetic in doubles: a million layers of width 1e6 must give "too much", not wrap.
std::int64_t bytes_of(double floats) {
  const double b = floats * 4.0;
  return b >= 9e18 ? (std::int64_t)9e18 : (std::int64_t)b;
}

struct StageParams {
  double dense = 0, expert = 0;  // parameters (and state) outside / inside routed experts
  double tensors = 0;            // tensor count: each is aligned to 16 floats in the arena
};

// The closed form of model::stage_tensor_specs (tested against it): the spec table itself is
// what a million-layer config must not build.
StageParams stage_params(const model::ModelConfig& c, const model::StageRange& r, int local_experts) {
  StageParams p;
  const double C = c.d_model;
  if (r.embedding) p.dense += (double)c.vocab * C, p.tensors += 1;
  for (int l = r.first_layer; l < r.end_layer; ++l) {
    p.dense += 4 * C * C + 2 * C, p.tensors += 4;
    if (!c.is_moe(l)) {
      p.dense += 3 * C * c.d_ff, p.tensors += 2;
      continue;
    }
    p.dense += (double)c.experts * C + c.experts, p.tensors += 2;
    if (c.d_shared() > 0) p.dense += 3 * C * c.d_shared(), p.tensors += 2;
    p.expert += (double)local_experts * 3 * C * c.d_expert, p.tensors += 2.0 * local_experts;
  }
  if (r.head) p.dense += C + (double)c.vocab * C, p.tensors += 2;
  return p;
}

// Floats one micro-batch keeps in a stage's StageActivations (model/stage.h), and the
// stage's per-call scratch. N = B·T tokens; R = rows this rank's experts compute, N·K on
// average whatever the expert parallelism.
struct StageActs {
  double per_microbatch = 0, scratch = 0;
};

// Attention's saved state per layer: the CPU keeps the softmax (B·H·T·T), the CUDA kernels the
// rows' log-sum-exp (B·H·T) — the backends' attention_saved_floats.
StageActs stage_activations(const model::ModelConfig& c, const model::StageRange& r, int B, int T, bool ep,
                            io::Device device) {
  const double N = (double)B * T, C = c.d_model, H = c.heads, K = c.top_k, E = c.experts, R = N * K;
  const int nl = r.end_layer - r.first_layer;
  StageActs a;
  a.per_microbatch = 2 * (nl + 1) * N * C;  // res, dres
  double widest = N * C;
  for (int l = r.first_layer; l < r.end_layer; ++l) {
    // x1 ln1 qkv(3) att ln2 | dx1 dqkv(3) dln1 dln2 = 13 N·C; rstd1, rstd2; attention's saved
    a.per_microbatch += 13 * N * C + 2 * N + (double)B * H * T * (device == io::Device::Cuda ? 1 : T);
    if (!c.is_moe(l)) {
      a.per_microbatch += 5 * N * c.d_ff;  // ab (N,2F), h (N,F), dab (N,2F)
      widest = std::max(widest, N * c.d_ff);
      continue;
    }
    a.per_microbatch += 5 * N * c.d_shared();        // the shared expert, as a dense FFN
    a.per_microbatch += 2 * N * E + N * K;            // scores, dlogits; gate
    a.per_microbatch += 3 * R * C + R * C;            // xp, yp, dyp (sender layout); yo
    a.per_microbatch += 5 * R * c.d_expert;           // abo (R,2Fe), ho (R,Fe), dabo (R,2Fe)
    if (ep) a.per_microbatch += 2 * R * C;            // xo, dyo (owner layout, own buffers)
    a.per_microbatch += 2 * R + E + 1;                // expert, row_of, offsets (int32)
    widest = std::max({widest, N * c.d_shared(), R * C, R * 2.0 * c.d_expert});
  }
  if (r.head) a.per_microbatch += 2 * N * C + N + N * c.vocab;  // lnf, dlnf, rstdf, logits
  a.per_microbatch += 2 * N;  // tokens, targets (the stage's copy and the batch's)
  a.scratch = 3 * widest;     // scratch_a_, scratch_b_, scratch_c_
  return a;
}

std::uint64_t data_bytes(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return fs::file_size(path, ec);
  std::uint64_t n = 0;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec)) n += it->file_size(ec);
  return n;
}

std::uint64_t read_meminfo(const char* key) {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return std::strtoull(line.c_str() + std::strlen(key), nullptr, 10) * 1024;
  return 0;
}

std::uint64_t read_status(const char* key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return std::strtoull(line.c_str() + std::strlen(key), nullptr, 10) * 1024;
  return 0;
}

std::uint64_t read_number(const char* path) {
  std::ifstream in(path);
  std::string s;
  if (!(in >> s) || s == "max") return 0;
  return std::strtoull(s.c_str(), nullptr, 10);
}

}  // namespace

MemoryEstimate estimate_rank_memory(const io::RunConfig& cfg, int pp_rank) {
  const model::ModelConfig m = to_model_config(cfg);
  const sched::ScheduleKind kind = schedule_for(cfg);
  const sched::Placement pl(kind, cfg.parallel.pp);
  const int microbatches = microbatches_per_pipeline(cfg);
  const int per_dir = kind == sched::ScheduleKind::DualPipe ? microbatches / 2 : microbatches;
  const int ep = cfg.parallel.ep, dp = cfg.parallel.dp;
  const int local_experts = m.experts / std::max(1, ep);
  const auto ranges = model::split_layers(m, pl.num_stages());
  // Copies of a stage that share its optimizer state: its data-parallel replicas, and under
  // DualPipe the mirror rank's copy; experts are shared by their dp/ep replicas only.
  const int mirror = kind == sched::ScheduleKind::DualPipe ? 2 : 1;
  const double dense_copies = (double)dp * mirror, expert_copies = (double)std::max(1, dp / std::max(1, ep)) * mirror;

  MemoryEstimate e;
  e.pp_rank = pp_rank;
  e.microbatches = per_dir;
  double params = 0, owned = 0, acts = 0, scratch = 0, tensors = 0;
  const int B = cfg.train.micro_batch_size, T = cfg.train.seq_len;
  for (int d = 0; d < pl.num_dirs(); ++d) {
    const auto& r = ranges[pl.stage_of(pp_rank, d)];
    const StageParams p = stage_params(m, r, local_experts);
    params += p.dense + p.expert, tensors += p.tensors;
    owned += p.dense / dense_copies + p.expert / expert_copies;
    const StageActs a = stage_activations(m, r, B, T, ep > 1, cfg.runtime.device);
    acts += a.per_microbatch;
    scratch += a.scratch;
  }
  params += 16 * tensors;  // the arena aligns each tensor to 16 floats
  e.parameters = bytes_of(params);
  e.gradients = bytes_of(params);
  e.optimizer = bytes_of(3 * owned);  // AdamW m, v and the reduce-scatter shard
  e.activation_per_microbatch = bytes_of(acts);
  e.activations = bytes_of(acts * per_dir);
  // Receive buffers: one activation and one gradient (N, C) per direction and micro-batch.
  const double recv = cfg.parallel.pp > 1 ? 2.0 * pl.num_dirs() * per_dir * (double)B * T * m.d_model : 0;
  e.buffers = bytes_of(scratch + recv) + (std::int64_t)data_bytes(cfg.data.path) + (8 << 20);  // + trace chunk, tables
  return e;
}

MemoryEstimate largest_rank_memory(const io::RunConfig& cfg) {
  MemoryEstimate best;
  for (int r = 0; r < cfg.parallel.pp; ++r) {
    MemoryEstimate e = estimate_rank_memory(cfg, r);
    if (r == 0 || e.total() > best.total()) best = e;
  }
  return best;
}

std::uint64_t available_memory() {
  std::uint64_t avail = read_meminfo("MemAvailable:");
  const std::uint64_t max = read_number("/sys/fs/cgroup/memory.max");
  if (max > 0) {
    const std::uint64_t used = read_number("/sys/fs/cgroup/memory.current");
    const std::uint64_t left = max > used ? max - used : 0;
    if (avail == 0 || left < avail) avail = left;
  }
  return avail;
}

std::string describe_memory(const MemoryEstimate& e) {
  auto b = [](std::int64_t x) { return io::format_bytes((std::uint64_t)std::max<std::int64_t>(0, x)); };
  return "~" + b(e.total()) + " per rank (pipeline position " + std::to_string(e.pp_rank) + "): parameters " +
         b(e.parameters) + ", gradients " + b(e.gradients) + ", optimizer " + b(e.optimizer) + ", activations " +
         b(e.activations) + " (" + std::to_string(e.microbatches) + " micro-batches × " +
         b(e.activation_per_microbatch) + "), buffers " + b(e.buffers);
}

std::string check_memory(const io::RunConfig& cfg, int ranks_here) {
  const MemoryEstimate e = largest_rank_memory(cfg);
  const bool limited = cfg.runtime.memory_limit > 0;
  const std::uint64_t budget = limited ? cfg.runtime.memory_limit : available_memory();
  const std::string line = "memory: " + describe_memory(e);
  const double need = (double)e.total() * std::max(1, ranks_here);
  if (budget == 0 || need <= (double)budget)
    return line + (budget ? "; " + io::format_bytes(budget) + (limited ? " allowed" : " available") +
                                " for " + std::to_string(std::max(1, ranks_here)) + " rank(s) here"
                          : "");
  // Name the keys behind the largest part, so the user knows what to change.
  struct Part {
    std::int64_t bytes;
    const char* keys;
  };
  std::vector<Part> parts = {
      {e.parameters + e.gradients + e.optimizer,
       "parameters, gradients and optimizer state (model.layers, model.d_model, model.d_ff, model.vocab, "
       "model.moe.experts × model.moe.d_expert; divided by parallel.pp and parallel.ep)"},
      {e.activations,
       "activations (micro-batches per pipeline = train.global_batch / (parallel.dp × train.micro_batch_size), each "
       "train.micro_batch_size × train.seq_len tokens × model.layers per stage × model.d_model, model.heads × "
       "train.seq_len² for attention, model.vocab for the logits)"},
      {e.buffers, "buffers (data.path, receive buffers per micro-batch)"},
  };
  std::sort(parts.begin(), parts.end(), [](const Part& a, const Part& b) { return a.bytes > b.bytes; });
  const int n = std::max(1, ranks_here);
  throw io::ConfigError("the job does not fit in memory: " + std::to_string(n) + " rank(s) on this machine need " +
                        io::format_bytes((std::uint64_t)std::min(need, 1.8e19)) + ", but " + io::format_bytes(budget) +
                        (limited ? " is allowed (runtime.memory_limit)"
                                 : " is available (MemAvailable; runtime.memory_limit sets another budget)") +
                        ". Estimate " + describe_memory(e) + ". The largest part is " + parts[0].keys +
                        ". `duet train --dry-run` prints the estimate");
}

int local_ranks() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "MPI_LOCALNRANKS"})
    if (const char* s = std::getenv(v)) return std::max(1, std::atoi(s));
  return 1;
}

std::uint64_t peak_rss() { return read_status("VmHWM:"); }
std::uint64_t current_rss() { return read_status("VmRSS:"); }

}  // namespace duet::runtime
