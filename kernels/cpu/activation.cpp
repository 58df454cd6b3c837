#include "kernels/activation.h"
#include "kernels/cpu/isa_clones.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/parallel.h"
#include "kernels/profile.h"

#include <cmath>

namespace duet::cpu {

// Rows [n0, n1) (elements for the sigmoid); the public kernels split them over threads.

DUET_ISA_CLONES void swiglu_forward_rows(float* h, const float* ab, int F, long n0, long n1) {
  for (long n = n0; n < n1; ++n) {
    const float* __restrict a = ab + (size_t)n * 2 * F;
    const float* __restrict b = a + F;
    float* __restrict y = h + (size_t)n * F;
    for (int f = 0; f < F; ++f) y[f] = a[f] / (1.0f + fast_exp(-a[f])) * b[f];
  }
}

void swiglu_forward(float* h, const float* ab, int N, int F) {
  DUET_PROFILE("swiglu");
  parallel_ranges(N, 4.0 * F, [&](long n0, long n1) { swiglu_forward_rows(h, ab, F, n0, n1); });
}

DUET_ISA_CLONES void swiglu_backward_rows(float* dab, const float* dh, const float* ab, int F, long n0, long n1) {
  for (long n = n0; n < n1; ++n) {
    const float* __restrict a = ab + (size_t)n * 2 * F;
    const float* __restrict b = a + F;
    const float* __restrict dy = dh + (size_t)n * F;
    float* __restrict da = dab + (size_t)n * 2 * F;
    float* __restrict db = da + F;
    for (int f = 0; f < F; ++f) {
      const float s = 1.0f / (1.0f + fast_exp(-a[f]));
      const float silu = a[f] * s;
      db[f] = dy[f] * silu;
      da[f] = dy[f] * b[f] * s * (1.0f + a[f] * (1.0f - s));
    }
  }
}

void swiglu_backward(float* dab, const float* dh, const float* ab, int N, int F) {
  DUET_PROFILE("swiglu");
  parallel_ranges(N, 6.0 * F, [&](long n0, long n1) { swiglu_backward_rows(dab, dh, ab, F, n0, n1); });
}

DUET_ISA_CLONES void sigmoid_forward_range(float* out, const float* in, long i0, long i1) {
  for (long i = i0; i < i1; ++i) out[i] = 1.0f / (1.0f + fast_exp(-in[i]));
}

void sigmoid_forward(float* out, const float* in, long n) {
  DUET_PROFILE("moe_routing");
  // In blocks of 16 floats so that threads do not share cache lines.
  const long blocks = (n + 15) / 16;
  parallel_ranges(blocks, 4.0 * 16, [&](long b0, long b1) {
    sigmoid_forward_range(out, in, b0 * 16, std::min(n, b1 * 16));
  });
}

}  // namespace duet::cpu
