#include "model/optimizer.h"

#include <cmath>
#include <vector>

#include "kernels/backend.h"

namespace duet::model {

double learning_rate(const OptimizerConfig& c, long step) {
  if (c.warmup_steps > 0 && step <= c.warmup_steps) return c.lr * step / c.warmup_steps;
  const long decay = std::max<long>(1, c.total_steps - c.warmup_steps);
  const double t = std::min(1.0, double(step - c.warmup_steps) / decay);
  return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + std::cos(M_PI * t));
}

namespace {

// Σ g² of each [lo, hi) of the gradients, in one call to the backend (one wait on a device).
std::vector<double> range_sums(const ParamArena& arena, const std::vector<int64_t>& ranges) {
  std::vector<double> sums(ranges.size() / 2);
  arena.backend().sum_squares_ranges(arena.grads().data(), ranges.data(), (int)sums.size(), sums.data());
  return sums;
}

}  // namespace

double grad_sum_squares(const ParamArena& arena) {
  std::vector<int64_t> ranges;
  for (const auto& spec : arena.specs())
    if (spec.trainable()) ranges.insert(ranges.end(), {spec.offset, spec.offset + spec.numel()});
  double s = 0.0;
  for (double x : range_sums(arena, ranges)) s += x;  // tensor by tensor, in order
  return s;
}

float clip_scale(double grad_norm, double clip) {
  if (clip <= 0.0 || grad_norm <= clip) return 1.0f;
  return (float)(clip / grad_norm);
}

AdamW::AdamW(const ParamArena& arena, OptimizerConfig cfg)
    : AdamW(arena, cfg, ArenaRanges{{0, (int64_t)arena.params().size()}}) {}

AdamW::AdamW(const ParamArena& arena, OptimizerConfig cfg, ArenaRanges owned) : cfg_(cfg), owned_(std::move(owned)) {
  kernels::require_all_ops(arena.backend(), "AdamW");
  int64_t n = 0;
  for (auto [b, e] : owned_) n += e - b;
  m_.assign(n, 0.0f), v_.assign(n, 0.0f);
}

template <class F>
void AdamW::for_owned(const ParamArena& arena, F&& f) const {
  int64_t moment = 0;  // moments are packed: owned range after owned range
  for (auto [b, e] : owned_) {
    for (const auto& spec : arena.specs()) {
      const int64_t lo = std::max(b, spec.offset), hi = std::min(e, spec.offset + spec.numel());
      if (lo < hi && spec.trainable()) f(spec, lo, hi, moment + (lo - b));
    }
    moment += e - b;
  }
}

void AdamW::step(ParamArena& arena, double lr, float grad_scale) {
  ++step_;
  const kernels::Backend& ops = arena.backend();
  for_owned(arena, [&](const TensorSpec& spec, int64_t lo, int64_t hi, int64_t mo) {
    const float decay = spec.role == TensorRole::Weight ? (float)cfg_.weight_decay : 0.0f;
    // The clip's scale is applied as AdamW reads the gradients: no pass of its own over them.
    const kernels::AdamWParams p{(float)lr, (float)cfg_.beta1, (float)cfg_.beta2, (float)cfg_.eps,
                                 decay, step_, grad_scale};
    ops.adamw_update(arena.params().data() + lo, arena.grads().data() + lo, m_.data() + mo, v_.data() + mo, hi - lo,
                     p);
  });
  ops.synchronize();  // the updated pieces are gathered (MPI) and checkpointed on the host
}

std::vector<AdamW::OwnedPiece> AdamW::owned_pieces(const ParamArena& arena) const {
  std::vector<OwnedPiece> out;
  for_owned(arena, [&](const TensorSpec& spec, int64_t lo, int64_t hi, int64_t mo) { out.push_back({&spec, lo, hi, mo}); });
  return out;
}

void AdamW::grad_sum_squares(const ParamArena& arena, double& dense, double& experts) const {
  std::vector<int64_t> ranges;
  std::vector<bool> expert;
  for_owned(arena, [&](const TensorSpec& spec, int64_t lo, int64_t hi, int64_t) {
    ranges.insert(ranges.end(), {lo, hi});
    expert.push_back(spec.expert >= 0);
  });
  const std::vector<double> sums = range_sums(arena, ranges);
  dense = experts = 0;
  for (size_t i = 0; i < sums.size(); ++i) (expert[i] ? experts : dense) += sums[i];  // in the same order
}

}  // namespace duet::model
