#include "kernels/moe.h"
#include "kernels/cpu/parallel.h"
#include "kernels/profile.h"

#include <cstring>
#include <vector>

namespace duet::cpu {

void moe_route(int32_t* expert, float* gate, const float* scores, const float* bias, int N, int E,
               int K) {
  DUET_PROFILE("moe_routing");
  for (int n = 0; n < N; ++n) {
    const float* s = scores + (size_t)n * E;
    int32_t* ex = expert + (size_t)n * K;
    // Top-K by s + bias with a partial insertion sort; ties go to the lower expert index.
    for (int k = 0; k < K; ++k) ex[k] = -1;
    for (int e = 0; e < E; ++e) {
      const float key = s[e] + bias[e];
      int pos = K;
      while (pos > 0 && (ex[pos - 1] < 0 || key > s[ex[pos - 1]] + bias[ex[pos - 1]])) --pos;
      if (pos == K) continue;
      for (int j = K - 1; j > pos; --j) ex[j] = ex[j - 1];
      ex[pos] = e;
    }
    float sum = 0.0f;
    for (int k = 0; k < K; ++k) sum += s[ex[k]];
    for (int k = 0; k < K; ++k) gate[(size_t)n * K + k] = s[ex[k]] / sum;
  }
}

void moe_route_backward(float* dlogits, const float* dgate, const float* scores,
                        const int32_t* expert, const float* gate, int N, int E, int K) {
  DUET_PROFILE("moe_routing");
  // g_k = s_k / S with S = Σ_j s_j over the chosen  ⇒  ∂L/∂s_k = (dg_k − Σ_j dg_j g_j) / S;
  // s = σ(logit) ⇒ ∂L/∂logit = ∂L/∂s · s (1 − s).
  for (int n = 0; n < N; ++n) {
    const float* s = scores + (size_t)n * E;
    const int32_t* ex = expert + (size_t)n * K;
    const float* g = gate + (size_t)n * K;
    const float* dg = dgate + (size_t)n * K;
    float* dl = dlogits + (size_t)n * E;
    std::memset(dl, 0, sizeof(float) * E);
    float S = 0.0f, dot = 0.0f;
    for (int k = 0; k < K; ++k) {
      S += s[ex[k]];
      dot += dg[k] * g[k];
    }
    for (int k = 0; k < K; ++k) {
      const float se = s[ex[k]];
      dl[ex[k]] = (dg[k] - dot) / S * se * (1.0f - se);
    }
  }
}

void moe_permute_plan(int32_t* row_of, int32_t* offsets, const int32_t* expert, int N, int E, int K) {
  DUET_PROFILE("moe_permute");
  for (int e = 0; e <= E; ++e) offsets[e] = 0;
  for (long i = 0; i < (long)N * K; ++i) offsets[expert[i] + 1]++;
  for (int e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  // Fill in token order: a cursor per expert.
  thread_local std::vector<int32_t> cursor;
  cursor.assign(offsets, offsets + E);
  for (long i = 0; i < (long)N * K; ++i) row_of[i] = cursor[expert[i]]++;
}

// Gather, combine and their backwards touch distinct rows per token n: split over tokens
// (parallel.h), each row computed as on one thread.
void moe_gather(float* xp, const float* x, const int32_t* row_of, int N, int K, int C) {
  DUET_PROFILE("moe_permute");
  parallel_ranges(N, 2.0 * K * C, [&](long n0, long n1) {
    for (long n = n0; n < n1; ++n)
      for (int k = 0; k < K; ++k)
        std::memcpy(xp + (size_t)row_of[(size_t)n * K + k] * C, x + (size_t)n * C, sizeof(float) * C);
  });
}

void moe_gather_backward(float* dx, const float* dxp, const int32_t* row_of, int N, int K, int C) {
  DUET_PROFILE("moe_permute");
  parallel_ranges(N, 2.0 * K * C, [&](long n0, long n1) {
    for (long n = n0; n < n1; ++n) {
      float* d = dx + (size_t)n * C;
      for (int k = 0; k < K; ++k) {
        const float* src = dxp + (size_t)row_of[(size_t)n * K + k] * C;
        for (int c = 0; c < C; ++c) d[c] += src[c];
      }
    }
  });
}

void moe_combine(float* out, const float* yp, const float* gate, const int32_t* row_of, int N, int K,
                 int C) {
  DUET_PROFILE("moe_permute");
  parallel_ranges(N, 2.0 * K * C, [&](long n0, long n1) {
    for (long n = n0; n < n1; ++n) {
      float* o = out + (size_t)n * C;
      for (int k = 0; k < K; ++k) {
        const float g = gate[(size_t)n * K + k];
        const float* y = yp + (size_t)row_of[(size_t)n * K + k] * C;
        for (int c = 0; c < C; ++c) o[c] += g * y[c];
      }
    }
  });
}

void moe_combine_backward(float* dyp, float* dgate, const float* dout, const float* yp,
                          const float* gate, const int32_t* row_of, int N, int K, int C) {
  DUET_PROFILE("moe_permute");
  parallel_ranges(N, 3.0 * K * C, [&](long n0, long n1) {
    for (long n = n0; n < n1; ++n) {
      const float* d = dout + (size_t)n * C;
      for (int k = 0; k < K; ++k) {
        const size_t row = row_of[(size_t)n * K + k];
        const float g = gate[(size_t)n * K + k];
        const float* y = yp + row * C;
        float* dy = dyp + row * C;
        float dot = 0.0f;
        for (int c = 0; c < C; ++c) {
          dy[c] = g * d[c];
          dot += d[c] * y[c];
        }
        dgate[(size_t)n * K + k] = dot;
      }
    }
  });
}

}  // namespace duet::cpu
