#pragma once
// How much memory a rank of a training job will hold, from the config alone — before anything
// large is allocated — so that a job that cannot fit is refused at once, naming the keys that
// drive it, instead of running into std::bad_alloc (or the kernel's OOM killer) minutes later.
//
// What a rank keeps (runtime/stages.h, model/stage.h, runtime/zero.h):
//   parameters  one float per parameter of the stages it holds (experts: its ep share)
//   gradients   one float per parameter (the arena's gradient buffer)
//   optimizer   ZeRO-1: AdamW m and v plus the reduce-scatter shard, 3 floats per parameter
//               the rank owns (its share over the copies of each stage)
//   activations every micro-batch of every direction keeps its StageActivations between steps
//               (buffers are reused, never freed), so all micro-batches per pipeline count,
//               not only those in flight at the schedule's peak (scheduler/validate.h)
//   buffers     per-stage scratch, point-to-point receive buffers (one per activation and
//               gradient, direction and micro-batch), the token data, the trace chunk
// Nothing here allocates in proportion to the model: a million layers are estimated in a loop.

#include <cstdint>
#include <string>

#include "io/config.h"

namespace duet::runtime {

struct MemoryEstimate {
  int pp_rank = 0;  // the pipeline position estimated (the largest, from largest_rank_memory)
  int microbatches = 0;                 // micro-batches whose activations a direction keeps
  std::int64_t activation_per_microbatch = 0;  // bytes, all of the rank's directions
  std::int64_t parameters = 0, gradients = 0, optimizer = 0, activations = 0, buffers = 0;  // bytes
  std::int64_t total() const { return parameters + gradients + optimizer + activations + buffers; }
};

// The estimate for the ranks at pipeline position pp_rank (every data- and expert-parallel
// rank there holds the same amount, up to the routing of tokens to experts). The config must
// be valid (io::validate); sizes saturate rather than overflow.
MemoryEstimate estimate_rank_memory(const io::RunConfig& cfg, int pp_rank);
// The pipeline position that needs the most.
MemoryEstimate largest_rank_memory(const io::RunConfig& cfg);

// Bytes this machine can give its ranks now: MemAvailable from /proc/meminfo, lowered to the
// cgroup's memory.max minus memory.current when that is smaller. 0 when unknown.
std::uint64_t available_memory();

// "~1.52 GiB per rank: parameters 120 MiB, gradients ..., activations 1.1 GiB
// (16 micro-batches × 70 MiB), buffers 3 MiB"
std::string describe_memory(const MemoryEstimate& e);

// Throws io::ConfigError when `local_ranks` ranks of the largest estimate exceed
// runtime.memory_limit (0: available_memory()), naming the keys that drive the biggest parts
// and what would fit. Returns the line describe_memory() gives, with the budget, for the log.
std::string check_memory(const io::RunConfig& cfg, int local_ranks);

// Ranks sharing this machine: OMPI_COMM_WORLD_LOCAL_SIZE (or Slurm's, MPICH's), else 1.
int local_ranks();

// Peak resident memory of this process so far (VmHWM) and now (VmRSS), bytes; 0 if unknown.
std::uint64_t peak_rss();
std::uint64_t current_rss();

}  // namespace duet::runtime
