#pragma once
// One token's routing and its backward, shared by the CPU and CUDA backends (host and device
// code alike), so both choose the same experts — ties go to the lower expert index — and
// compute the same gates. Shapes as in kernels/moe.h, for one token: s and bias (E), ex and
// gate (K), dlogits (E).
#include <cstdint>

#if defined(__CUDACC__)
#define DUET_HOST_DEVICE __host__ __device__
#else
#define DUET_HOST_DEVICE
#endif

namespace duet::kernels {

DUET_HOST_DEVICE inline void route_token(int32_t* ex, float* gate, const float* s, const float* bias, int E, int K) {
  // Top-K by s + bias with a partial insertion sort.
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
  for (int k = 0; k < K; ++k) gate[k] = s[ex[k]] / sum;
}

// g_k = s_k / S with S = Σ_j s_j over the chosen  ⇒  ∂L/∂s_k = (dg_k − Σ_j dg_j g_j) / S;
// s = σ(logit) ⇒ ∂L/∂logit = ∂L/∂s · s (1 − s). dlogits is written, zero for unchosen experts.
DUET_HOST_DEVICE inline void route_token_backward(float* dl, const float* dg, const float* s, const int32_t* ex,
                                                  const float* g, int E, int K) {
  for (int e = 0; e < E; ++e) dl[e] = 0.0f;
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

}  // namespace duet::kernels
