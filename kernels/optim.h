#pragma once
#include <cstdint>
// AdamW (decoupled weight decay) with bias correction, over n contiguous parameters.
// m and v are the first and second moments; step is 1-based.

namespace duet::kernels {

// Backend-neutral (every backend's adamw_update takes it), hence not in duet::cpu.
struct AdamWParams {
  float lr, beta1, beta2, eps, weight_decay;
  long step;
  // The gradients are read as grads[i] · grad_scale (the global-norm clip): the same values as
  // scaling them first, without a pass over them of its own; grads is left as it was.
  float grad_scale = 1.0f;
};

}  // namespace duet::kernels

namespace duet::cpu {

using kernels::AdamWParams;

void adamw_update(float* params, const float* grads, float* m, float* v, long n, const AdamWParams& p);

// Σ g² over n values, in double (for the global gradient norm).
double sum_squares(const float* g, long n);
// Σ g² over each of `count` ranges of g — ranges[2i] to ranges[2i+1], elements — into sums[i],
// each the value sum_squares gives for its range alone; `ranges` and `sums` are host arrays.
// On a device one wait for all of them, not one per range (a tensor each: hundreds per step).
void sum_squares_ranges(const float* g, const int64_t* ranges, int count, double* sums);
void scale(float* x, long n, float s);

}  // namespace duet::cpu
