#pragma once
#include <cstdint>
#include <vector>

#include "kernels/buffer.h"
#include "model/arena.h"

// AdamW over a parameter arena (or over a contiguous shard of it, for ZeRO-1), with the
// learning-rate schedule and global-norm clipping that the trainer applies each step. The
// kernels (scale, adamw_update, sum_squares) are the arena's backend's. The moments are host
// vectors for now.

namespace duet::model {

struct OptimizerConfig {
  double lr = 3e-3, min_lr = 3e-4;
  int warmup_steps = 0, total_steps = 1;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1, grad_clip = 1.0;
};

// Linear warm-up from lr/warmup to lr over warmup_steps, then cosine decay to min_lr at
// total_steps. step is 1-based.
double learning_rate(const OptimizerConfig& c, long step);

// Σ g² over the trainable tensors of the arena (State tensors have no gradient).
double grad_sum_squares(const ParamArena& arena);

// Element ranges [begin, end) of an arena.
using ArenaRanges = std::vector<std::pair<int64_t, int64_t>>;

// AdamW over the parts of an arena this rank owns: the whole arena, or — ZeRO-1 — its shard
// of each reduce-scatter bucket. Moments exist only for owned elements.
class AdamW {
 public:
  AdamW(const ParamArena& arena, OptimizerConfig cfg);                      // owns everything
  AdamW(const ParamArena& arena, OptimizerConfig cfg, ArenaRanges owned);  // owns a shard

  // One update of every owned trainable element: grads are read multiplied by grad_scale
  // (the clip factor, computed by the caller from the global norm; grads are left as they are). Weight decay only on
  // Weight tensors; State tensors are never touched.
  void step(ParamArena& arena, double lr, float grad_scale);
  long steps_taken() const { return step_; }
  const ArenaRanges& owned() const { return owned_; }
  // Σ g² over the owned trainable elements, split into dense and routed-expert tensors.
  void grad_sum_squares(const ParamArena& arena, double& dense, double& experts) const;

  // The owned part of each trainable tensor: elements [begin, end) of the arena, whose
  // moments start at m()/v()[moment] (for checkpoints: a ZeRO-1 shard is saved per tensor).
  struct OwnedPiece {
    const TensorSpec* spec;
    int64_t begin, end, moment;
  };
  std::vector<OwnedPiece> owned_pieces(const ParamArena& arena) const;

  kernels::Buffer<float>& m() { return m_; }
  kernels::Buffer<float>& v() { return v_; }
  void set_steps_taken(long s) { step_ = s; }

 private:
  // Calls f(spec, begin, end, moment_offset) for every owned piece of a trainable tensor.
  template <class F>
  void for_owned(const ParamArena& arena, F&& f) const;

  OptimizerConfig cfg_;
  ArenaRanges owned_;
  kernels::Buffer<float> m_, v_;
  long step_ = 0;
};

// The clip factor for a global gradient norm: min(1, clip / norm); 1 when clip is 0.
float clip_scale(double grad_norm, double clip);

}  // namespace duet::model
