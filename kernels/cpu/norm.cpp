#include "kernels/norm.h"
#include "kernels/cpu/isa_clones.h"
#include "kernels/profile.h"

#include <cmath>

namespace duet::cpu {

DUET_ISA_CLONES void rmsnorm_forward(float* out, float* rstd, const float* in, const float* weight, int N, int C,
                     float eps) {
  DUET_PROFILE("rmsnorm");
  for (int n = 0; n < N; ++n) {
    const float* x = in + (size_t)n * C;
    float* y = out + (size_t)n * C;
    float ss = 0.0f;
    for (int c = 0; c < C; ++c) ss += x[c] * x[c];
    const float r = 1.0f / std::sqrt(ss / C + eps);
    rstd[n] = r;
    for (int c = 0; c < C; ++c) y[c] = x[c] * r * weight[c];
  }
}

DUET_ISA_CLONES void rmsnorm_backward_input(float* din, const float* dout, const float* in, const float* weight,
                            const float* rstd, int N, int C) {
  DUET_PROFILE("rmsnorm");
  // y_c = x_c r w_c, r = (mean(x²)+eps)^(-1/2)  ⇒  dx_c = r (g_c − x_c r² · mean_k(g_k x_k)),
  // with g = dout ⊙ w.
  for (int n = 0; n < N; ++n) {
    const float* x = in + (size_t)n * C;
    const float* dy = dout + (size_t)n * C;
    float* dx = din + (size_t)n * C;
    const float r = rstd[n];
    float dot = 0.0f;
    for (int c = 0; c < C; ++c) dot += dy[c] * weight[c] * x[c];
    const float k = dot * r * r / C;
    for (int c = 0; c < C; ++c) dx[c] += r * (dy[c] * weight[c] - x[c] * k);
  }
}

DUET_ISA_CLONES void rmsnorm_backward_weight(float* dweight, const float* dout, const float* in, const float* rstd,
                             int N, int C) {
  DUET_PROFILE("rmsnorm");
  for (int n = 0; n < N; ++n) {
    const float* x = in + (size_t)n * C;
    const float* dy = dout + (size_t)n * C;
    const float r = rstd[n];
    for (int c = 0; c < C; ++c) dweight[c] += dy[c] * x[c] * r;
  }
}

}  // namespace duet::cpu
