// The feed-forward half of a layer: a dense SwiGLU, or a DeepSeek-style MoE — one shared
// SwiGLU expert plus top-K of E routed SwiGLU experts, sigmoid affinities normalised over the
// chosen experts, selection steered by a per-expert bias (auxiliary-loss-free balancing).
#include <algorithm>
#include <cstring>

#include "kernels/backend.h"
#include "model/buffers.h"
#include "model/stage.h"

namespace duet::model {

namespace {

// SwiGLU FFN on rows of `in` (N,C): ab = in·W13ᵀ, h = silu(a)⊙b, out += h·W2ᵀ.
void swiglu_ffn_forward(const kernels::Backend& ops, float* out, kernels::Buffer<float>& ab,
                        kernels::Buffer<float>& h, const float* in, const float* w13, const float* w2,
                        int N, int C, int F) {
  ops.linear_forward(sized(ab, (size_t)N * 2 * F), in, w13, N, C, 2 * F, false);
  ops.swiglu_forward(sized(h, (size_t)N * F), ab.data(), N, F);
  ops.linear_forward(out, h.data(), w2, N, F, C, /*accumulate=*/true);
}

// dab (stashed for the weight pass) and din (+= when accumulate) from dout (N,C).
void swiglu_ffn_backward_input(const kernels::Backend& ops, float* din, kernels::Buffer<float>& dab,
                               kernels::Buffer<float>& dh, const float* dout, const float* ab,
                               const float* w13, const float* w2, int N, int C, int F,
                               bool accumulate) {
  ops.linear_backward_input(sized(dh, (size_t)N * F), dout, w2, N, F, C, false);
  ops.swiglu_backward(sized(dab, (size_t)N * 2 * F), dh.data(), ab, N, F);
  ops.linear_backward_input(din, dab.data(), w13, N, C, 2 * F, accumulate);
}

void swiglu_ffn_backward_weight(const kernels::Backend& ops, float* g_w13, float* g_w2,
                                const float* dout, const float* dab, const float* h,
                                const float* in, int N, int C, int F) {
  ops.linear_backward_weight(g_w2, dout, h, N, F, C);
  ops.linear_backward_weight(g_w13, dab, in, N, C, 2 * F);
}

}  // namespace

void Stage::ffn_forward(const LayerParams& p, LayerActivations& L, float* out, int N, bool training) {
  const int C = cfg_.d_model;
  if (!p.moe) {
    swiglu_ffn_forward(ops_, out, L.ab, L.h, L.ln2.data(), p.w13, p.w2, N, C, cfg_.d_ff);
    return;
  }
  const int E = cfg_.experts, K = cfg_.top_k, Fe = cfg_.d_expert;
  float* scores = sized(L.scores, (size_t)N * E);
  ops_.linear_forward(scores, L.ln2.data(), p.router, N, C, E, false);
  ops_.sigmoid_forward(scores, scores, (long)N * E);
  ops_.moe_route(sized(L.expert, (size_t)N * K), sized(L.gate, (size_t)N * K), scores, p.bias, N, E,
                 K);
  ops_.moe_permute_plan(sized(L.row_of, (size_t)N * K), sized(L.offsets, E + 1), L.expert.data(), N,
                        E, K);
  ops_.moe_gather(sized(L.xp, (size_t)N * K * C), L.ln2.data(), L.row_of.data(), N, K, C);
  // The host plans the dispatch from the rows per expert, read by a copy: a wait for this
  // thread's kernels (the dispatch sends xp), without the host touching a device buffer (on a
  // GPU its managed pages would fault across to the host, and back at the next micro-batch).
  std::vector<int32_t> offsets(E + 1), per_expert(E);
  ops_.copy_to_host(offsets.data(), L.offsets.data(), sizeof(int32_t) * (E + 1));
  for (int e = 0; e < E; ++e) per_expert[e] = offsets[e + 1] - offsets[e];
  if (training)  // the balance bias's load: every (token, chosen expert) pair, counted by expert
    for (int e = 0; e < E; ++e) load_[(size_t)p.load_row * E + e] += per_expert[e];

  // Dispatch: rows travel to their experts' owners (all-to-all), or stay (no expert parallelism).
  if (exchange_) {
    exchange_->plan(L.plan, per_expert.data(), E);
    exchange_->dispatch(L.plan, L.xp.data(), L.xo, C);
  } else {
    L.plan.local_counts = per_expert;
  }
  const float* xo = exchange_ ? L.xo.data() : L.xp.data();
  const size_t R = L.plan.owner_rows();
  sized(L.abo, R * 2 * Fe), sized(L.ho, R * Fe), sized(L.yo, R * C);
  // The local experts over their runs of rows: one grouped op per GEMM, SwiGLU over all rows.
  const int G = (int)L.plan.local_counts.size();
  const int* counts = L.plan.local_counts.data();
  ops_.grouped_linear_forward(L.abo.data(), xo, p.ew13.data(), counts, G, C, 2 * Fe);
  ops_.swiglu_forward(L.ho.data(), L.abo.data(), (int)R, Fe);
  ops_.grouped_linear_forward(L.yo.data(), L.ho.data(), p.ew2.data(), counts, G, Fe, C);
  // Combine: expert outputs come back to the tokens' rank.
  if (exchange_) {
    ops_.synchronize();
    exchange_->combine(L.plan, L.yo.data(), L.yp, C);
  }
  const float* yp = exchange_ ? L.yp.data() : L.yo.data();
  if (cfg_.d_shared() > 0)
    swiglu_ffn_forward(ops_, out, L.ab, L.h, L.ln2.data(), p.sw13, p.sw2, N, C, cfg_.d_shared());
  ops_.moe_combine(out, yp, L.gate.data(), L.row_of.data(), N, K, C);
}

void Stage::ffn_backward_input(const LayerParams& p, LayerActivations& L, const float* dy, int N) {
  const int C = cfg_.d_model;
  float* dln2 = sized(L.dln2, (size_t)N * C);
  if (!p.moe) {
    swiglu_ffn_backward_input(ops_, dln2, L.dab, dh_dense_, dy, L.ab.data(), p.w13, p.w2, N, C,
                              cfg_.d_ff, false);
    return;
  }
  const int E = cfg_.experts, K = cfg_.top_k, Fe = cfg_.d_expert;
  const size_t rows = (size_t)N * K;
  const float* yp = exchange_ ? L.yp.data() : L.yo.data();
  float* dgate = sized(dgate_, rows);
  ops_.moe_combine_backward(sized(L.dyp, rows * C), dgate, dy, yp, L.gate.data(), L.row_of.data(),
                            N, K, C);
  float* dlogits = sized(L.dlogits, (size_t)N * E);
  ops_.moe_route_backward(dlogits, dgate, L.scores.data(), L.expert.data(), L.gate.data(), N, E, K);
  ops_.linear_backward_input(dln2, dlogits, p.router, N, C, E, false);

  if (exchange_) {
    ops_.synchronize();
    exchange_->dispatch(L.plan, L.dyp.data(), L.dyo, C);
  }
  const float* dyo = exchange_ ? L.dyo.data() : L.dyp.data();
  const size_t R = L.plan.owner_rows();
  float* dho = sized(dho_, R * Fe);
  float* dabo = sized(L.dabo, R * 2 * Fe);
  float* dxo = sized(dxo_, R * C);
  const int G = (int)L.plan.local_counts.size();
  const int* counts = L.plan.local_counts.data();
  ops_.grouped_linear_backward_input(dho, dyo, p.ew2.data(), counts, G, Fe, C);
  ops_.swiglu_backward(dabo, dho, L.abo.data(), (int)R, Fe);
  ops_.grouped_linear_backward_input(dxo, dabo, p.ew13.data(), counts, G, C, 2 * Fe);
  const float* dxp = dxo;
  if (exchange_) {
    ops_.synchronize();
    exchange_->combine(L.plan, dxo, dxp_, C);
    dxp = dxp_.data();
  }
  ops_.moe_gather_backward(dln2, dxp, L.row_of.data(), N, K, C);
  if (cfg_.d_shared() > 0)
    swiglu_ffn_backward_input(ops_, dln2, L.dab, dh_shared_, dy, L.ab.data(), p.sw13, p.sw2, N, C,
                              cfg_.d_shared(), true);
}

void Stage::ffn_backward_weight(const LayerParams& p, LayerActivations& L, const float* dy, int N) {
  const int C = cfg_.d_model;
  if (!p.moe) {
    swiglu_ffn_backward_weight(ops_, p.g_w13, p.g_w2, dy, L.dab.data(), L.h.data(), L.ln2.data(), N,
                               C, cfg_.d_ff);
    return;
  }
  const int E = cfg_.experts, Fe = cfg_.d_expert;
  ops_.linear_backward_weight(p.g_router, L.dlogits.data(), L.ln2.data(), N, C, E);
  const float* xo = exchange_ ? L.xo.data() : L.xp.data();
  const float* dyo = exchange_ ? L.dyo.data() : L.dyp.data();
  const int G = (int)L.plan.local_counts.size();
  const int* counts = L.plan.local_counts.data();
  ops_.grouped_linear_backward_weight(p.g_ew2.data(), dyo, L.ho.data(), counts, G, Fe, C);
  ops_.grouped_linear_backward_weight(p.g_ew13.data(), L.dabo.data(), xo, counts, G, C, 2 * Fe);
  if (cfg_.d_shared() > 0)
    swiglu_ffn_backward_weight(ops_, p.g_sw13, p.g_sw2, dy, L.dab.data(), L.h.data(), L.ln2.data(),
                               N, C, cfg_.d_shared());
}

}  // namespace duet::model
