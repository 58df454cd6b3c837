#include "runtime/train_setup.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <vector>
#include <stdexcept>
#include <thread>

#include "model/tensor_spec.h"
#include "runtime/comm_nccl.h"
#include "runtime/memory_estimate.h"  // local_ranks

namespace duet::runtime {

model::ModelConfig to_model_config(const io::RunConfig& cfg) {
  const auto& m = cfg.model;
  model::ModelConfig out;
  out.vocab = m.vocab, out.d_model = m.d_model, out.layers = m.layers, out.heads = m.heads;
  out.dense_layers = m.dense_layers, out.d_ff = m.d_ff;
  out.experts = m.moe.experts, out.top_k = m.moe.top_k, out.shared_experts = m.moe.shared_experts;
  out.d_expert = m.moe.d_expert;
  out.rope_theta = (float)m.rope_theta, out.norm_eps = (float)m.norm_eps;
  return out;
}

sched::ScheduleKind schedule_for(const io::RunConfig& cfg) {
  return core::effective_schedule(cfg.parallel.schedule, cfg.parallel.pp);
}

int microbatches_per_pipeline(const io::RunConfig& cfg) {
  return core::microbatches_per_pipeline(cfg.parallel.pp * cfg.parallel.dp, io::configured_layout(cfg),
                                         io::layout_rules(cfg));
}

model::OptimizerConfig to_optimizer_config(const io::RunConfig& cfg) {
  const auto& t = cfg.train;
  model::OptimizerConfig o;
  o.lr = t.lr, o.min_lr = t.min_lr, o.warmup_steps = t.warmup_steps, o.total_steps = t.steps;
  o.beta1 = t.beta1, o.beta2 = t.beta2, o.eps = t.eps, o.weight_decay = t.weight_decay;
  o.grad_clip = t.grad_clip;
  return o;
}

DataPlane data_plane_for(const io::RunConfig& cfg) {
  if (cfg.runtime.data_plane == io::DataPlane::Mpi) return {};
  if (cfg.runtime.device != io::Device::Cuda)
    throw io::ConfigError("runtime.data_plane: nccl carries GPU memory and needs runtime.device: cuda; allowed: mpi, nccl");
  const std::string absent = nccl_absent_reason();
  if (!absent.empty()) throw io::ConfigError("runtime.data_plane: nccl, but " + absent + "; allowed: mpi, nccl");
  return [](Communicator& group) { return make_nccl_communicator(group); };
}

std::string bind_local_gpu(const io::RunConfig& cfg) {
  if (cfg.runtime.data_plane != io::DataPlane::Nccl) return "";
  // Hardware work queues for the streams (default 8): with a receive posted ahead on each of a
  // dozen NCCL streams, kernels of other streams sharing a queue would wait behind a blocked
  // one. A value the user set stands.
  setenv("CUDA_DEVICE_MAX_CONNECTIONS", "32", /*overwrite=*/0);
  const char* local = nullptr;
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"})
    if ((local = std::getenv(name))) break;
  if (!local) return "";
  const int me = std::atoi(local);
  std::vector<std::string> visible;
  if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) {
    std::stringstream in(v);
    for (std::string d; std::getline(in, d, ',');)
      if (!d.empty()) visible.push_back(d);
    if (visible.size() <= 1) return "";  // bound already (or none: the backend says so)
    if ((size_t)me >= visible.size())  // NCCL refuses two ranks on one GPU
      throw io::ConfigError("runtime.data_plane: nccl takes one GPU per rank, but local rank " + std::to_string(me) +
                            " has none: CUDA_VISIBLE_DEVICES lists " + std::to_string(visible.size()) +
                            " (start at most that many ranks per node, or use runtime.data_plane: mpi)");
  }
  const std::string gpu = visible.empty() ? std::to_string(me) : visible[(size_t)me];
  setenv("CUDA_VISIBLE_DEVICES", gpu.c_str(), 1);
  return "runtime.data_plane: nccl: local rank " + std::to_string(me) + " uses GPU " + gpu + " (CUDA_VISIBLE_DEVICES)";
}

const kernels::Backend& backend_for(const io::RunConfig& cfg) {
  if (cfg.runtime.device == io::Device::Cpu) return kernels::cpu_backend();
  const kernels::Backend* cuda = kernels::cuda_backend();
  if (cuda && cfg.model.heads > 0 && cfg.model.d_model / cfg.model.heads > kernels::kCudaMaxHeadDim)
    throw io::ConfigError("runtime.device: cuda takes attention heads of at most " +
                          std::to_string(kernels::kCudaMaxHeadDim) + " dimensions; model.d_model / model.heads is " +
                          std::to_string(cfg.model.d_model / cfg.model.heads) + ": raise model.heads or use runtime.device: cpu");
  if (cuda) {
    // Over NCCL each rank has a GPU of its own (bind_local_gpu); over MPI the node's ranks share
    // the visible one: its memory is divided among them.
    kernels::set_cuda_processes_per_device(cfg.runtime.data_plane == io::DataPlane::Nccl ? 1 : local_ranks());
    return cfg.model.precision == io::Precision::kBF16 ? *kernels::cuda_bf16_backend() : *cuda;
  }
  throw io::ConfigError("runtime.device: cuda, but " + kernels::cuda_backend_absent_reason() + "; allowed: cpu, cuda");
}

int compute_threads(const io::RunConfig& cfg, int local_ranks) {
  if (cfg.runtime.threads > 0) return cfg.runtime.threads;
  const int cores = (int)std::max(1u, std::thread::hardware_concurrency());
  return std::max(1, cores / std::max(1, local_ranks));
}

}  // namespace duet::runtime
