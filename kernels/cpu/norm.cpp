#include "kernels/norm.h"
#include "kernels/cpu/isa_clones.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/reduce.h"
#include "kernels/profile.h"

#include <cmath>

namespace duet::cpu {

// The *_rows / *_cols functions do rows [n0, n1) or columns [c0, c1); the public kernels split
// those over threads (parallel.h).

DUET_ISA_CLONES void rmsnorm_forward_rows(float* out, float* rstd, const float* in, const float* weight, int C,
                                          float eps, long n0, long n1) {
  for (long n = n0; n < n1; ++n) {
    const float* x = in + (size_t)n * C;
    float* y = out + (size_t)n * C;
    const float ss = dot_lanes(x, x, C);
    const float r = 1.0f / std::sqrt(ss / C + eps);
    rstd[n] = r;
    for (int c = 0; c < C; ++c) y[c] = x[c] * r * weight[c];
  }
}

void rmsnorm_forward(float* out, float* rstd, const float* in, const float* weight, int N, int C, float eps) {
  DUET_PROFILE("rmsnorm");
  parallel_ranges(N, 2.0 * C, [&](long n0, long n1) { rmsnorm_forward_rows(out, rstd, in, weight, C, eps, n0, n1); });
}

// y_c = x_c r w_c, r = (mean(x²)+eps)^(-1/2)  ⇒  dx_c = r (g_c − x_c r² · mean_k(g_k x_k)),
// with g = dout ⊙ w.
DUET_ISA_CLONES void rmsnorm_backward_input_rows(float* din, const float* dout, const float* in,
                                                 const float* weight, const float* rstd, int C, long n0, long n1) {
  for (long n = n0; n < n1; ++n) {
    const float* x = in + (size_t)n * C;
    const float* dy = dout + (size_t)n * C;
    float* dx = din + (size_t)n * C;
    const float r = rstd[n];
    const float dot = dot3_lanes(dy, weight, x, C);
    const float k = dot * r * r / C;
    for (int c = 0; c < C; ++c) dx[c] += r * (dy[c] * weight[c] - x[c] * k);
  }
}

void rmsnorm_backward_input(float* din, const float* dout, const float* in, const float* weight, const float* rstd,
                            int N, int C) {
  DUET_PROFILE("rmsnorm");
  parallel_ranges(N, 3.0 * C, [&](long n0, long n1) {
    rmsnorm_backward_input_rows(din, dout, in, weight, rstd, C, n0, n1);
  });
}

// A sum over rows per column: split by columns, so every column keeps its serial order.
DUET_ISA_CLONES void rmsnorm_backward_weight_cols(float* dweight, const float* dout, const float* in,
                                                  const float* rstd, int N, int C, long c0, long c1) {
  for (int n = 0; n < N; ++n) {
    const float* x = in + (size_t)n * C;
    const float* dy = dout + (size_t)n * C;
    const float r = rstd[n];
    for (long c = c0; c < c1; ++c) dweight[c] += dy[c] * x[c] * r;
  }
}

void rmsnorm_backward_weight(float* dweight, const float* dout, const float* in, const float* rstd, int N, int C) {
  DUET_PROFILE("rmsnorm");
  // Columns in blocks of 16 floats (a cache line), so threads do not share lines of dweight.
  const long blocks = (C + 15) / 16;
  parallel_ranges(blocks, 2.0 * 16 * N, [&](long b0, long b1) {
    rmsnorm_backward_weight_cols(dweight, dout, in, rstd, N, C, b0 * 16, std::min<long>(C, b1 * 16));
  });
}

}  // namespace duet::cpu
