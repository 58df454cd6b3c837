#include "kernels/activation.h"
#include "kernels/cpu/isa_clones.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/profile.h"

#include <cmath>

namespace duet::cpu {

DUET_ISA_CLONES void swiglu_forward(float* h, const float* ab, int N, int F) {
  DUET_PROFILE("swiglu");
  for (int n = 0; n < N; ++n) {
    const float* __restrict a = ab + (size_t)n * 2 * F;
    const float* __restrict b = a + F;
    float* __restrict y = h + (size_t)n * F;
    for (int f = 0; f < F; ++f) y[f] = a[f] / (1.0f + fast_exp(-a[f])) * b[f];
  }
}

DUET_ISA_CLONES void swiglu_backward(float* dab, const float* dh, const float* ab, int N, int F) {
  DUET_PROFILE("swiglu");
  for (int n = 0; n < N; ++n) {
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

DUET_ISA_CLONES void sigmoid_forward(float* out, const float* in, long n) {
  DUET_PROFILE("moe_routing");
  for (long i = 0; i < n; ++i) out[i] = 1.0f / (1.0f + fast_exp(-in[i]));
}

}  // namespace duet::cpu
