#include "kernels/moe.h"
#include "kernels/moe_token.h"
#include "kernels/cpu/parallel.h"
#include "kernels/profile.h"

#include <cstring>
#include <vector>

namespace duet::cpu {

void moe_route(int32_t* expert, float* gate, const float* scores, const float* bias, int N, int E,
               int K) {
  DUET_PROFILE("moe_routing");
  for (int n = 0; n < N; ++n)
    kernels::route_token(expert + (size_t)n * K, gate + (size_t)n * K, scores + (size_t)n * E, bias, E, K);
}

void moe_route_backward(float* dlogits, const float* dgate, const float* scores,
                        const int32_t* expert, const float* gate, int N, int E, int K) {
  DUET_PROFILE("moe_routing");
  for (int n = 0; n < N; ++n)
    kernels::route_token_backward(dlogits + (size_t)n * E, dgate + (size_t)n * K, scores + (size_t)n * E,
                                  expert + (size_t)n * K, gate + (size_t)n * K, E, K);
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
