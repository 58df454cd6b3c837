#include "model/optimizer.h"

#include <cmath>

#include "kernels/optim.h"

namespace duet::model {

double learning_rate(const OptimizerConfig& c, long step) {
  if (c.warmup_steps > 0 && step <= c.warmup_steps) return c.lr * step / c.warmup_steps;
  const long decay = std::max<long>(1, c.total_steps - c.warmup_steps);
  const double t = std::min(1.0, double(step - c.warmup_steps) / decay);
  return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + std::cos(M_PI * t));
}

double grad_sum_squares(const ParamArena& arena) {
  double s = 0.0;
  for (const auto& spec : arena.specs())
    if (spec.trainable()) s += cpu::sum_squares(arena.grads().data() + spec.offset, spec.numel());
  return s;
}

float clip_scale(double grad_norm, double clip) {
  if (clip <= 0.0 || grad_norm <= clip) return 1.0f;
  return (float)(clip / grad_norm);
}

AdamW::AdamW(const ParamArena& arena, OptimizerConfig cfg)
    : cfg_(cfg), m_(arena.params().size(), 0.0f), v_(arena.params().size(), 0.0f) {}

void AdamW::step(ParamArena& arena, double lr, float grad_scale) {
  ++step_;
  for (const auto& spec : arena.specs()) {
    if (!spec.trainable()) continue;
    float* g = arena.grads().data() + spec.offset;
    if (grad_scale != 1.0f) cpu::scale(g, spec.numel(), grad_scale);
    const cpu::AdamWParams p{(float)lr, (float)cfg_.beta1, (float)cfg_.beta2, (float)cfg_.eps,
                             spec.role == TensorRole::Weight ? (float)cfg_.weight_decay : 0.0f, step_};
    cpu::adamw_update(arena.params().data() + spec.offset, g, m_.data() + spec.offset,
                      v_.data() + spec.offset, spec.numel(), p);
  }
}

}  // namespace duet::model
