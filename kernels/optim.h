#pragma once
// AdamW (decoupled weight decay) with bias correction, over n contiguous parameters.
// m and v are the first and second moments; step is 1-based.

namespace duet::kernels {

// Backend-neutral (every backend's adamw_update takes it), hence not in duet::cpu.
struct AdamWParams {
  float lr, beta1, beta2, eps, weight_decay;
  long step;
};

}  // namespace duet::kernels

namespace duet::cpu {

using kernels::AdamWParams;

void adamw_update(float* params, const float* grads, float* m, float* v, long n, const AdamWParams& p);

// Σ g² over n values, in double (for the global gradient norm).
double sum_squares(const float* g, long n);
void scale(float* x, long n, float s);

}  // namespace duet::cpu
