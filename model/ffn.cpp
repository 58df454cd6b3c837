// The feed-forward half of a layer: a dense SwiGLU, or a DeepSeek-style MoE — one shared
// SwiGLU expert plus top-K of E routed SwiGLU experts, sigmoid affinities normalised over the
// chosen experts, selection steered by a per-expert bias (auxiliary-loss-free balancing).
#include <algorithm>
#include <cstring>

#include "kernels/activation.h"
#include "kernels/gemm.h"
#include "kernels/moe.h"
#include "model/stage.h"

namespace duet::model {

using namespace duet::cpu;

namespace {

template <class T>
T* sized(std::vector<T>& v, size_t n) {
  if (v.size() != n) v.resize(n);
  return v.data();
}

// SwiGLU FFN on rows of `in` (N,C): ab = in·W13ᵀ, h = silu(a)⊙b, out += h·W2ᵀ.
void swiglu_ffn_forward(float* out, std::vector<float>& ab, std::vector<float>& h, const float* in,
                        const float* w13, const float* w2, int N, int C, int F) {
  linear_forward(sized(ab, (size_t)N * 2 * F), in, w13, N, C, 2 * F);
  swiglu_forward(sized(h, (size_t)N * F), ab.data(), N, F);
  gemm(false, true, N, C, F, 1.0f, h.data(), F, w2, F, 1.0f, out, C);
}

// dab (stashed for the weight pass) and din (+= when accumulate) from dout (N,C).
void swiglu_ffn_backward_input(float* din, std::vector<float>& dab, std::vector<float>& dh,
                               const float* dout, const float* ab, const float* w13, const float* w2,
                               int N, int C, int F, bool accumulate) {
  linear_backward_input(sized(dh, (size_t)N * F), dout, w2, N, F, C, false);
  swiglu_backward(sized(dab, (size_t)N * 2 * F), dh.data(), ab, N, F);
  linear_backward_input(din, dab.data(), w13, N, C, 2 * F, accumulate);
}

void swiglu_ffn_backward_weight(float* g_w13, float* g_w2, const float* dout, const float* dab,
                                const float* h, const float* in, int N, int C, int F) {
  linear_backward_weight(g_w2, dout, h, N, F, C);
  linear_backward_weight(g_w13, dab, in, N, C, 2 * F);
}

}  // namespace

void Stage::ffn_forward(const LayerParams& p, LayerActivations& L, float* out, int N, bool training) {
  const int C = cfg_.d_model;
  if (!p.moe) {
    swiglu_ffn_forward(out, L.ab, L.h, L.ln2.data(), p.w13, p.w2, N, C, cfg_.d_ff);
    return;
  }
  const int E = cfg_.experts, K = cfg_.top_k, Fe = cfg_.d_expert;
  float* scores = sized(L.scores, (size_t)N * E);
  linear_forward(scores, L.ln2.data(), p.router, N, C, E);
  sigmoid_forward(scores, scores, (long)N * E);
  moe_route(sized(L.expert, (size_t)N * K), sized(L.gate, (size_t)N * K), scores, p.bias, N, E, K);
  if (training)
    for (int32_t e : L.expert) load_[(size_t)p.load_row * E + e]++;
  moe_permute_plan(sized(L.row_of, (size_t)N * K), sized(L.offsets, E + 1), L.expert.data(), N, E, K);
  const size_t rows = (size_t)N * K;
  moe_gather(sized(L.xp, rows * C), L.ln2.data(), L.row_of.data(), N, K, C);
  sized(L.abp, rows * 2 * Fe), sized(L.hp, rows * Fe), sized(L.yp, rows * C);
  for (int e = 0; e < E; ++e) {
    const int r0 = L.offsets[e], n = L.offsets[e + 1] - r0;
    if (n == 0) continue;
    linear_forward(L.abp.data() + (size_t)r0 * 2 * Fe, L.xp.data() + (size_t)r0 * C, p.ew13[e], n, C, 2 * Fe);
    swiglu_forward(L.hp.data() + (size_t)r0 * Fe, L.abp.data() + (size_t)r0 * 2 * Fe, n, Fe);
    linear_forward(L.yp.data() + (size_t)r0 * C, L.hp.data() + (size_t)r0 * Fe, p.ew2[e], n, Fe, C);
  }
  if (cfg_.d_shared() > 0) swiglu_ffn_forward(out, L.ab, L.h, L.ln2.data(), p.sw13, p.sw2, N, C, cfg_.d_shared());
  moe_combine(out, L.yp.data(), L.gate.data(), L.row_of.data(), N, K, C);
}

void Stage::ffn_backward_input(const LayerParams& p, LayerActivations& L, const float* dy, int N) {
  const int C = cfg_.d_model;
  float* dln2 = sized(L.dln2, (size_t)N * C);
  if (!p.moe) {
    swiglu_ffn_backward_input(dln2, L.dab, scratch_b_, dy, L.ab.data(), p.w13, p.w2, N, C, cfg_.d_ff, false);
    return;
  }
  const int E = cfg_.experts, K = cfg_.top_k, Fe = cfg_.d_expert;
  const size_t rows = (size_t)N * K;
  float* dgate = sized(scratch_a_, rows);
  moe_combine_backward(sized(L.dyp, rows * C), dgate, dy, L.yp.data(), L.gate.data(), L.row_of.data(), N, K, C);
  float* dlogits = sized(L.dlogits, (size_t)N * E);
  moe_route_backward(dlogits, dgate, L.scores.data(), L.expert.data(), L.gate.data(), N, E, K);
  linear_backward_input(dln2, dlogits, p.router, N, C, E, false);

  float* dhp = sized(scratch_b_, rows * Fe);
  float* dabp = sized(L.dabp, rows * 2 * Fe);
  float* dxp = sized(scratch_a_, rows * C);  // dgate is consumed above
  for (int e = 0; e < E; ++e) {
    const int r0 = L.offsets[e], n = L.offsets[e + 1] - r0;
    if (n == 0) continue;
    linear_backward_input(dhp + (size_t)r0 * Fe, L.dyp.data() + (size_t)r0 * C, p.ew2[e], n, Fe, C, false);
    swiglu_backward(dabp + (size_t)r0 * 2 * Fe, dhp + (size_t)r0 * Fe, L.abp.data() + (size_t)r0 * 2 * Fe, n, Fe);
    linear_backward_input(dxp + (size_t)r0 * C, dabp + (size_t)r0 * 2 * Fe, p.ew13[e], n, C, 2 * Fe, false);
  }
  moe_gather_backward(dln2, dxp, L.row_of.data(), N, K, C);
  if (cfg_.d_shared() > 0)
    swiglu_ffn_backward_input(dln2, L.dab, scratch_b_, dy, L.ab.data(), p.sw13, p.sw2, N, C, cfg_.d_shared(), true);
}

void Stage::ffn_backward_weight(const LayerParams& p, LayerActivations& L, const float* dy, int N) {
  const int C = cfg_.d_model;
  if (!p.moe) {
    swiglu_ffn_backward_weight(p.g_w13, p.g_w2, dy, L.dab.data(), L.h.data(), L.ln2.data(), N, C, cfg_.d_ff);
    return;
  }
  const int E = cfg_.experts, Fe = cfg_.d_expert;
  linear_backward_weight(p.g_router, L.dlogits.data(), L.ln2.data(), N, C, E);
  for (int e = 0; e < E; ++e) {
    const int r0 = L.offsets[e], n = L.offsets[e + 1] - r0;
    if (n == 0) continue;
    swiglu_ffn_backward_weight(p.g_ew13[e], p.g_ew2[e], L.dyp.data() + (size_t)r0 * C,
                               L.dabp.data() + (size_t)r0 * 2 * Fe, L.hp.data() + (size_t)r0 * Fe,
                               L.xp.data() + (size_t)r0 * C, n, C, Fe);
  }
  if (cfg_.d_shared() > 0)
    swiglu_ffn_backward_weight(p.g_sw13, p.g_sw2, dy, L.dab.data(), L.h.data(), L.ln2.data(), N, C, cfg_.d_shared());
}

}  // namespace duet::model
