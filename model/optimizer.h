#pragma once
#include <cstdint>
#include <vector>

#include "model/arena.h"

// AdamW over a parameter arena (or over a contiguous shard of it, for ZeRO-1), with the
// learning-rate schedule and global-norm clipping that the trainer applies each step.

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

class AdamW {
 public:
  AdamW(const ParamArena& arena, OptimizerConfig cfg);

  // One update of every trainable tensor: grads are first multiplied by grad_scale (the clip
  // factor, computed by the caller from the global norm). Weight decay only on Weight tensors.
  void step(ParamArena& arena, double lr, float grad_scale);
  long steps_taken() const { return step_; }

  std::vector<float>& m() { return m_; }
  std::vector<float>& v() { return v_; }
  void set_steps_taken(long s) { step_ = s; }

 private:
  OptimizerConfig cfg_;
  std::vector<float> m_, v_;
  long step_ = 0;
};

// The clip factor for a global gradient norm: min(1, clip / norm); 1 when clip is 0.
float clip_scale(double grad_norm, double clip);

}  // namespace duet::model
