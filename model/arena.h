#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/config.h"
#include "model/tensor_spec.h"

// One parameter arena and one gradient arena with the same layout, laid out from a
// tensor-spec table. Every tensor is an offset into one buffer, so optimizer steps,
// gradient reductions and checkpoint slices are plain ranges.

namespace duet::model {

class ParamArena {
 public:
  explicit ParamArena(std::vector<TensorSpec> specs);

  const std::vector<TensorSpec>& specs() const { return specs_; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  const TensorSpec& spec(const std::string& name) const;

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
  std::vector<float> params_, grads_;
};

// Deterministic initialisation keyed by (seed, tensor name, element index): a tensor gets the
// same values whichever stage, rank or shard holds it, so every parallel layout starts from
// the same model. Weights ~ N(0, 0.02²), output projections scaled by 1/√(2·layers); norm
// gains 1; state 0.
void init_parameters(ParamArena& arena, const ModelConfig& cfg, uint64_t seed);

// The value init_parameters gives element i of a tensor (for tests and resharding).
float init_value(const TensorSpec& spec, const ModelConfig& cfg, uint64_t seed, int64_t i);

}  // namespace duet::model
