#include "kernels/attention.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/profile.h"

#include <cmath>
#include <vector>

#include "kernels/gemm.h"

namespace duet::cpu {

void attention_forward(float* out, float* probs, const float* qkv, int B, int T, int H, int D) {
  DUET_PROFILE("attention");
  const int C = H * D;
  const float scale = 1.0f / std::sqrt((float)D);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const float* q = qkv + (size_t)b * T * 3 * C + h * D;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* p = probs + ((size_t)b * H + h) * T * T;
      gemm(false, true, T, T, D, scale, q, 3 * C, k, 3 * C, 0.0f, p, T);
      for (int t = 0; t < T; ++t) {
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
      gemm(false, false, T, D, T, 1.0f, p, T, v, 3 * C, 0.0f, out + (size_t)b * T * C + h * D, C);
    }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* probs, int B,
                        int T, int H, int D) {
  DUET_PROFILE("attention");
  const int C = H * D;
  const float scale = 1.0f / std::sqrt((float)D);
  thread_local std::vector<float> dp;
  dp.resize((size_t)T * T);
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
      gemm(false, true, T, T, D, 1.0f, dO, C, v, 3 * C, 0.0f, dp.data(), T);  // dP = dO Vᵀ
      gemm(true, false, T, D, T, 1.0f, p, T, dO, C, 0.0f, dv, 3 * C);         // dV = Pᵀ dO
      for (int t = 0; t < T; ++t) {  // dS = P ⊙ (dP − Σ P⊙dP), masked entries stay 0
        const float* pr = p + (size_t)t * T;
        float* dr = dp.data() + (size_t)t * T;
        float dot = 0.0f;
        for (int s = 0; s <= t; ++s) dot += pr[s] * dr[s];
        for (int s = 0; s <= t; ++s) dr[s] = pr[s] * (dr[s] - dot);
        for (int s = t + 1; s < T; ++s) dr[s] = 0.0f;
      }
      gemm(false, false, T, D, T, scale, dp.data(), T, k, 3 * C, 0.0f, dq, 3 * C);  // dQ = dS K
      gemm(true, false, T, D, T, scale, dp.data(), T, q, 3 * C, 0.0f, dk, 3 * C);   // dK = dSᵀ Q
    }
}

}  // namespace duet::cpu
