#pragma once
#include <cstdint>

// Mixture-of-experts routing and token movement (DeepSeek-V3 style).
// N tokens, E routed experts, top-K per token, C channels.
//   scores (N, E): sigmoid affinities s = σ(x · Wrᵀ)
//   expert (N, K): the chosen experts, by s + bias (the bias steers selection only)
//   gate   (N, K): s of the chosen experts normalised to sum to 1 over the K chosen
// Permuted buffers hold one row per (token, k) assignment, grouped by expert in token order
// (a stable counting sort), so an expert's tokens are contiguous and the order is
// deterministic: row_of[n·K + k] is the row of assignment (n, k); offsets (E+1) delimit the
// experts' row ranges.

namespace duet::cpu {

void moe_route(int32_t* expert, float* gate, const float* scores, const float* bias, int N, int E,
               int K);
// dlogits (N, E) = ∂loss/∂(router logits), written; zero for unchosen experts.
void moe_route_backward(float* dlogits, const float* dgate, const float* scores,
                        const int32_t* expert, const float* gate, int N, int E, int K);

void moe_permute_plan(int32_t* row_of, int32_t* offsets, const int32_t* expert, int N, int E, int K);
// xp[row_of[n,k]] = x[n]
void moe_gather(float* xp, const float* x, const int32_t* row_of, int N, int K, int C);
// dx[n] += Σ_k dxp[row_of[n,k]]
void moe_gather_backward(float* dx, const float* dxp, const int32_t* row_of, int N, int K, int C);
// out[n] += Σ_k gate[n,k] · yp[row_of[n,k]]
void moe_combine(float* out, const float* yp, const float* gate, const int32_t* row_of, int N, int K,
                 int C);
// dyp[row] = gate · dout[n] (written); dgate[n,k] = dout[n] · yp[row] (written)
void moe_combine_backward(float* dyp, float* dgate, const float* dout, const float* yp,
                          const float* gate, const int32_t* row_of, int N, int K, int C);

}  // namespace duet::cpu
