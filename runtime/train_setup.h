#pragma once
// The bridge from the run config (io/) to the model's plain configs (model/): the only place
// that knows both, so neither module depends on the other.

#include "io/config.h"
#include "kernels/backend.h"
#include "model/config.h"
#include "model/optimizer.h"
#include "runtime/comm.h"
#include "scheduler/placement.h"

namespace duet::runtime {

model::ModelConfig to_model_config(const io::RunConfig& cfg);
model::OptimizerConfig to_optimizer_config(const io::RunConfig& cfg);

// The configured layout's schedule and micro-batches per pipeline, by core/layout.h's rules
// (throws std::invalid_argument naming the broken rule).
sched::ScheduleKind schedule_for(const io::RunConfig& cfg);
int microbatches_per_pipeline(const io::RunConfig& cfg);

// The kernel backend runtime.device names: cpu_backend(), or the CUDA backend (its BF16-GEMM
// table for model.precision: bf16). Throws
// io::ConfigError naming the key when it is cuda and this build has no CUDA, or no device is
// visible.
const kernels::Backend& backend_for(const io::RunConfig& cfg);

// What carries the pipeline's messages (runtime.data_plane): empty for mpi (the pipeline
// group itself), NCCL for nccl. Throws io::ConfigError naming the keys when nccl is asked for
// without runtime.device: cuda, or NCCL cannot run here (no CUDA in the build, no GPU).
DataPlane data_plane_for(const io::RunConfig& cfg);

// runtime.data_plane: nccl takes one GPU per rank: when the process sees several (or
// CUDA_VISIBLE_DEVICES is unset) and its launcher names its local rank (Open MPI, Slurm), sets
// CUDA_VISIBLE_DEVICES to the local rank's GPU, so every thread of the process uses it as
// device 0. Call before anything touches CUDA. Returns a line for the log ("" = unchanged).
// Throws io::ConfigError when the list has no GPU left for this local rank.
std::string bind_local_gpu(const io::RunConfig& cfg);

// Compute threads for this process: runtime.threads, or the machine's cores divided by the
// ranks that share it (at least 1).
int compute_threads(const io::RunConfig& cfg, int local_ranks);

}  // namespace duet::runtime
