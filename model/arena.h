#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/backend.h"
#include "kernels/buffer.h"
#include "model/config.h"
#include "model/tensor_spec.h"

// One parameter arena and one gradient arena with the same layout, laid out from a
// tensor-spec table. Every tensor is an offset into one buffer, so optimizer steps,
// gradient reductions and checkpoint slices are plain ranges. Both buffers come from a kernel
// backend's allocator (host-addressable memory, see kernels/backend.h); the model computes on
// them with that backend's kernels (Stage and AdamW take it from the arena). Their other
// buffers (activations, moments: kernels::Buffer) come from the process's compute backend,
// which is the arena's default — runtime.device sets it before the arenas are made; an arena
// on another backend than the compute backend is for host-side tests only.

namespace duet::model {

class ParamArena {
 public:
  // `backend` must outlive the arena (the built-in backends live for the whole program).
  explicit ParamArena(std::vector<TensorSpec> specs,
                      const kernels::Backend& backend = kernels::compute_backend());

  const kernels::Backend& backend() const { return *backend_; }

  const std::vector<TensorSpec>& specs() const { return specs_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const TensorSpec& spec(const std::string& name) const;

  // Pointers into the arena; valid as long as the arena lives (it never reallocates).
  float* param(const std::string& name) { return params_.data() + spec(name).offset; }
  float* grad(const std::string& name) { return grads_.data() + spec(name).offset; }
  const float* param(const std::string& name) const { return params_.data() + spec(name).offset; }

  std::span<float> params() { return params_; }
  std::span<float> grads() { return grads_; }
  std::span<const float> params() const { return params_; }
  std::span<const float> grads() const { return grads_; }

  void zero_grads();

 private:
  std::vector<TensorSpec> specs_;
  std::unordered_map<std::string, size_t> index_;
  const kernels::Backend* backend_;
  struct Free {
    const kernels::Backend* backend;
    void operator()(float* p) const { backend->free(p); }
  };
  std::unique_ptr<float[], Free> params_mem_, grads_mem_;  // own the storage
  std::span<float> params_, grads_;                        // view it, with the element count
};

// Deterministic initialisation keyed by (seed, tensor name, element index): a tensor gets the
// same values whichever stage, rank or shard holds it, so every parallel layout starts from
// the same model. Weights ~ N(0, 0.02²), output projections scaled by 1/√(2·layers); norm
// gains 1; state 0.
void init_parameters(ParamArena& arena, const ModelConfig& cfg, uint64_t seed);

// The value init_parameters gives element i of a tensor (for tests and resharding).
float init_value(const TensorSpec& spec, const ModelConfig& cfg, uint64_t seed, int64_t i);

}  // namespace duet::model
