#include "kernels/attention.h"
#include "kernels/cpu/isa_clones.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/profile.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/gemm.h"

namespace duet::cpu {

namespace {
// Causal attention only needs scores below the diagonal. Rows are taken in tiles of
// kTile: tile [r0, r1) multiplies against keys [0, r1) only, so the GEMMs skip most of the
// masked upper triangle (at T = 256, 62% of the full-square work) while staying large.
constexpr int kTile = 64;
}  // namespace

DUET_ISA_CLONES void attention_forward(float* out, float* probs, const float* qkv, int B, int T, int H, int D) {
  DUET_PROFILE("attention");
  const int C = H * D;
  const float scale = 1.0f / std::sqrt((float)D);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const float* q = qkv + (size_t)b * T * 3 * C + h * D;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* p = probs + ((size_t)b * H + h) * T * T;
      float* o = out + (size_t)b * T * C + h * D;
      for (int r0 = 0; r0 < T; r0 += kTile) {
        const int r1 = std::min(T, r0 + kTile), n = r1 - r0;
        gemm(false, true, n, r1, D, scale, q + (size_t)r0 * 3 * C, 3 * C, k, 3 * C, 0.0f, p + (size_t)r0 * T, T);
        for (int t = r0; t < r1; ++t) {
          float* row = p + (size_t)t * T;
          float m = row[0];
          for (int s = 1; s <= t; ++s) m = std::max(m, row[s]);
          for (int s = 0; s <= t; ++s) row[s] = fast_exp(row[s] - m);  // vectorised
          float sum = 0.0f;
          for (int s = 0; s <= t; ++s) sum += row[s];
          const float inv = 1.0f / sum;
          for (int s = 0; s <= t; ++s) row[s] *= inv;
          for (int s = t + 1; s < T; ++s) row[s] = 0.0f;
        }
        gemm(false, false, n, D, r1, 1.0f, p + (size_t)r0 * T, T, v, 3 * C, 0.0f, o + (size_t)r0 * C, C);
      }
    }
}

DUET_ISA_CLONES void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* probs, int B,
                        int T, int H, int D) {
  DUET_PROFILE("attention");
  const int C = H * D;
  const float scale = 1.0f / std::sqrt((float)D);
  thread_local std::vector<float> dp;
  dp.resize((size_t)kTile * T);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const size_t base = (size_t)b * T * 3 * C + h * D;
      const float* q = qkv + base;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* dq = dqkv + base;
      float* dk = dq + C;
      float* dv = dq + 2 * C;
      const float* p = probs + ((size_t)b * H + h) * T * T;
      const float* dO = dout + (size_t)b * T * C + h * D;
      // dK and dV gather contributions from every row tile at or below them.
      for (int t = 0; t < T; ++t)
        for (int d = 0; d < D; ++d) dk[(size_t)t * 3 * C + d] = dv[(size_t)t * 3 * C + d] = 0.0f;
      for (int r0 = 0; r0 < T; r0 += kTile) {
        const int r1 = std::min(T, r0 + kTile), n = r1 - r0;
        const float* pt = p + (size_t)r0 * T;
        const float* dOt = dO + (size_t)r0 * C;
        gemm(false, true, n, r1, D, 1.0f, dOt, C, v, 3 * C, 0.0f, dp.data(), T);  // dP = dO Vᵀ
        gemm(true, false, r1, D, n, 1.0f, pt, T, dOt, C, 1.0f, dv, 3 * C);        // dV += Pᵀ dO
        for (int t = r0; t < r1; ++t) {  // dS = P ⊙ (dP − Σ P⊙dP), masked entries stay 0
          const float* pr = p + (size_t)t * T;
          float* dr = dp.data() + (size_t)(t - r0) * T;
          float dot = 0.0f;
          for (int s = 0; s <= t; ++s) dot += pr[s] * dr[s];
          for (int s = 0; s <= t; ++s) dr[s] = pr[s] * (dr[s] - dot);
          for (int s = t + 1; s < r1; ++s) dr[s] = 0.0f;
        }
        gemm(false, false, n, D, r1, scale, dp.data(), T, k, 3 * C, 0.0f, dq + (size_t)r0 * 3 * C, 3 * C);  // dQ = dS K
        gemm(true, false, r1, D, n, scale, dp.data(), T, q + (size_t)r0 * 3 * C, 3 * C, 1.0f, dk, 3 * C);  // dK += dSᵀ Q
      }
    }
}

}  // namespace duet::cpu
