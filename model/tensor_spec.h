#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

// The tensor-spec table: one row per parameter (or persistent state) tensor of the model,
// in a canonical order. It drives the parameter arena, gradient buckets, ZeRO-1 ownership,
// checkpoint dataset names and resharding — everything that needs to know "which tensor is
// where" asks this table.

namespace duet::model {

enum class TensorRole {
  Weight,  // trained, weight decay applies (matrices)
  Norm,    // trained, no weight decay (RMSNorm gains)
  State,   // not trained: e.g. the MoE selection bias, updated from the observed load
};

struct TensorSpec {
  std::string name;             // e.g. "layers.3.moe.experts.5.w13"
  std::vector<int64_t> shape;   // global shape
  TensorRole role = TensorRole::Weight;
  int layer = -1;               // -1: embedding / final norm / head
  int expert = -1;              // routed expert index, -1 if not an expert tensor
  int64_t offset = 0;           // element offset inside an arena (set by the arena)

  int64_t numel() const;
  bool trainable() const { return role != TensorRole::State; }
};

// Which part of the model a stage holds: layers [first_layer, end_layer), the embedding if it
// is the first stage, the final norm and head if it is the last, and routed experts
// [expert_begin, expert_end) of each MoE layer (all of them unless expert parallelism
// shards them).
struct StageRange {
  int first_layer = 0;
  int end_layer = 0;
  bool embedding = false;
  bool head = false;
  int expert_begin = 0;
  int expert_end = -1;  // -1: all experts

  static StageRange whole_model(const ModelConfig& cfg) {
    return {0, cfg.layers, true, true, 0, cfg.experts};
  }
};

// Every tensor of the full model, in canonical order.
std::vector<TensorSpec> model_tensor_specs(const ModelConfig& cfg);
// The tensors a stage holds, in canonical order.
std::vector<TensorSpec> stage_tensor_specs(const ModelConfig& cfg, const StageRange& range);

// Splits `layers` into `stages` contiguous runs as evenly as possible (earlier stages get the
// extra layer). Stage 0 holds the embedding, the last stage the head.
std::vector<StageRange> split_layers(const ModelConfig& cfg, int stages);

// Number of parameters a token touches in one forward (routed experts counted top_k times,
// embedding excluded), for the 6·P FLOP estimate.
int64_t active_params_per_token(const ModelConfig& cfg);
int64_t total_params(const ModelConfig& cfg);

// Model FLOPs per token of one training step (forward + backward): 6 × the parameters a token
// touches (routed experts counted top_k times) plus the attention core — QKᵀ and PV cost
// 4·T·C per token per layer forward over the full square, 2·T·C with the causal mask, and
// the backward twice that: 6·L·T·C.
double train_flops_per_token(const ModelConfig& cfg, int seq_len);

}  // namespace duet::model
