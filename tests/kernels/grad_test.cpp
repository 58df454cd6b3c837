// Every CPU kernel's backward against central finite differences of a double-precision
// reference forward (see grad_check.h). To add an op: write its forward in double below,
// project the output on random weights, and compare with the kernel's backward.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/loss.h"
#include "kernels/moe.h"
#include "kernels/norm.h"
#include "kernels/optim.h"
#include "kernels/rope.h"
#include "kernels/cpu/fast_exp.h"
#include "tests/kernels/grad_check.h"

using namespace duet::cpu;
using namespace duet::test;
using V = std::vector<double>;

constexpr double kTol = 2e-3;  // float kernel vs double reference

TEST(KernelGrad, Linear) {
  const int N = 5, I = 7, O = 3;
  auto x = random_vec(N * I, 1), w = random_vec(O * I, 2), dy = random_vec(N * O, 3);
  std::vector<float> y(N * O), dx(N * I), dw(O * I, 0.0f);
  linear_forward(y.data(), x.data(), w.data(), N, I, O, false);
  linear_backward_input(dx.data(), dy.data(), w.data(), N, I, O, false);
  linear_backward_weight(dw.data(), dy.data(), x.data(), N, I, O);
  auto fwd = [&](const V& xx, const V& ww) {
    double L = 0;
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < O; ++o) {
        double s = 0;
        for (int i = 0; i < I; ++i) s += xx[n * I + i] * ww[o * I + i];
        L += s * dy[n * O + o];
      }
    return L;
  };
  // The forward itself matches the reference.
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < O; ++o) {
      double s = 0;
      for (int i = 0; i < I; ++i) s += (double)x[n * I + i] * w[o * I + i];
      EXPECT_NEAR(y[n * O + o], s, 1e-5);
    }
  const V xd = to_double(x), wd = to_double(w);
  EXPECT_LT(rel_error(dx, numeric_grad(xd, [&](const V& v) { return fwd(v, wd); })), kTol);
  EXPECT_LT(rel_error(dw, numeric_grad(wd, [&](const V& v) { return fwd(xd, v); })), kTol);
  // Weight gradients accumulate.
  linear_backward_weight(dw.data(), dy.data(), x.data(), N, I, O);
  auto g = numeric_grad(wd, [&](const V& v) { return fwd(xd, v); });
  for (auto& v : g) v *= 2;
  EXPECT_LT(rel_error(dw, g), kTol);
}

TEST(KernelGrad, RMSNorm) {
  const int N = 4, C = 16;
  const float eps = 1e-5f;
  auto x = random_vec(N * C, 4), w = random_vec(C, 5), dy = random_vec(N * C, 6);
  for (auto& v : w) v += 1.0f;
  std::vector<float> y(N * C), rstd(N), dx(N * C, 0.0f), dw(C, 0.0f);
  rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, eps);
  rmsnorm_backward_input(dx.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C);
  rmsnorm_backward_weight(dw.data(), dy.data(), x.data(), rstd.data(), N, C);
  auto fwd = [&](const V& xx, const V& ww) {
    double L = 0;
    for (int n = 0; n < N; ++n) {
      double ss = 0;
      for (int c = 0; c < C; ++c) ss += xx[n * C + c] * xx[n * C + c];
      const double r = 1.0 / std::sqrt(ss / C + eps);
      for (int c = 0; c < C; ++c) L += xx[n * C + c] * r * ww[c] * dy[n * C + c];
    }
    return L;
  };
  const V xd = to_double(x), wd = to_double(w);
  EXPECT_LT(rel_error(dx, numeric_grad(xd, [&](const V& v) { return fwd(v, wd); })), kTol);
  EXPECT_LT(rel_error(dw, numeric_grad(wd, [&](const V& v) { return fwd(xd, v); })), kTol);
}

TEST(KernelGrad, Rope) {
  const int B = 2, T = 5, H = 2, D = 4, C = H * D;
  std::vector<float> table(T * D);
  rope_table(table.data(), T, D, 10000.0f);
  auto qkv = random_vec(B * T * 3 * C, 7), dy = random_vec(B * T * 3 * C, 8);
  auto y = qkv;
  rope_forward(y.data(), table.data(), B, T, H, D);
  auto dx = dy;
  rope_backward(dx.data(), table.data(), B, T, H, D);
  auto fwd = [&](const V& x) {
    V out = x;
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t)
        for (int part = 0; part < 2; ++part)
          for (int h = 0; h < H; ++h)
            for (int i = 0; i < D / 2; ++i) {
              const size_t o = ((size_t)(b * T + t)) * 3 * C + part * C + h * D + 2 * i;
              const double ang = t * std::pow(10000.0, -2.0 * i / D);
              out[o] = x[o] * std::cos(ang) - x[o + 1] * std::sin(ang);
              out[o + 1] = x[o] * std::sin(ang) + x[o + 1] * std::cos(ang);
            }
    return dot(out, to_double(dy));
  };
  EXPECT_LT(rel_error(dx, numeric_grad(to_double(qkv), fwd)), kTol);
  // v is untouched by the forward.
  for (int n = 0; n < B * T; ++n)
    for (int c = 0; c < C; ++c) EXPECT_EQ(y[n * 3 * C + 2 * C + c], qkv[n * 3 * C + 2 * C + c]);
}

void check_causal_attention(int B, int T, int H, int D) {
  const int C = H * D;
  auto qkv = random_vec(B * T * 3 * C, 9), dy = random_vec(B * T * C, 10);
  std::vector<float> out(B * T * C), probs(B * H * T * T), dqkv(B * T * 3 * C);
  attention_forward(out.data(), probs.data(), qkv.data(), B, T, H, D);
  attention_backward(dqkv.data(), dy.data(), qkv.data(), out.data(), probs.data(), B, T, H, D);
  auto fwd_out = [&](const V& x) {
    V o(B * T * C, 0.0);
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h)
        for (int t = 0; t < T; ++t) {
          auto at = [&](int tt, int part, int d) { return x[((size_t)(b * T + tt)) * 3 * C + part * C + h * D + d]; };
          std::vector<double> s(t + 1);
          double m = -1e300;
          for (int u = 0; u <= t; ++u) {
            double acc = 0;
            for (int d = 0; d < D; ++d) acc += at(t, 0, d) * at(u, 1, d);
            s[u] = acc / std::sqrt((double)D);
            m = std::max(m, s[u]);
          }
          double z = 0;
          for (auto& v : s) z += (v = std::exp(v - m));
          for (int d = 0; d < D; ++d) {
            double acc = 0;
            for (int u = 0; u <= t; ++u) acc += s[u] / z * at(u, 2, d);
            o[((size_t)(b * T + t)) * C + h * D + d] = acc;
          }
        }
    return o;
  };
  const V ref = fwd_out(to_double(qkv));
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(out[i], ref[i], 1e-5);
  // Causality: probabilities above the diagonal are exactly zero.
  for (int t = 0; t < T; ++t)
    for (int u = t + 1; u < T; ++u) EXPECT_EQ(probs[t * T + u], 0.0f);
  auto loss = [&](const V& x) { return dot(fwd_out(x), to_double(dy)); };
  EXPECT_LT(rel_error(dqkv, numeric_grad(to_double(qkv), loss)), kTol);
}

TEST(KernelGrad, CausalAttention) { check_causal_attention(2, 6, 2, 4); }
// Longer than one row tile (64): the tiles' partial dK/dV sums and the skipped upper
// triangle must still give the exact gradient.
TEST(KernelGrad, CausalAttentionSeveralTiles) { check_causal_attention(1, 150, 1, 2); }

TEST(KernelGrad, SwiGLU) {
  const int N = 3, F = 5;
  auto ab = random_vec(N * 2 * F, 11), dy = random_vec(N * F, 12);
  std::vector<float> h(N * F), dab(N * 2 * F);
  swiglu_forward(h.data(), ab.data(), N, F);
  swiglu_backward(dab.data(), dy.data(), ab.data(), N, F);
  auto loss = [&](const V& x) {
    double L = 0;
    for (int n = 0; n < N; ++n)
      for (int f = 0; f < F; ++f) {
        const double a = x[n * 2 * F + f], b = x[n * 2 * F + F + f];
        L += a / (1 + std::exp(-a)) * b * dy[n * F + f];
      }
    return L;
  };
  EXPECT_LT(rel_error(dab, numeric_grad(to_double(ab), loss)), kTol);
}

TEST(KernelGrad, CrossEntropy) {
  const int N = 4, V_ = 11;
  const float scale = 0.25f;
  auto logits = random_vec(N * V_, 13, 2.0f);
  std::vector<int32_t> tgt = {3, 0, 10, 7};
  auto probs = logits;
  const double loss_sum = cross_entropy_forward(probs.data(), tgt.data(), N, V_);
  auto ref = [&](const V& x) {
    double L = 0;
    for (int n = 0; n < N; ++n) {
      double m = -1e300, z = 0;
      for (int v = 0; v < V_; ++v) m = std::max(m, x[n * V_ + v]);
      for (int v = 0; v < V_; ++v) z += std::exp(x[n * V_ + v] - m);
      L += std::log(z) + m - x[n * V_ + tgt[n]];
    }
    return L;
  };
  EXPECT_NEAR(loss_sum, ref(to_double(logits)), 1e-4);
  cross_entropy_backward(probs.data(), tgt.data(), N, V_, scale);
  auto g = numeric_grad(to_double(logits), ref);
  for (auto& v : g) v *= scale;
  EXPECT_LT(rel_error(probs, g), kTol);
}

TEST(KernelGrad, EmbeddingWeight) {
  const int N = 6, C = 3, Vv = 5;
  auto wte = random_vec(Vv * C, 14), dy = random_vec(N * C, 15);
  std::vector<int32_t> tok = {1, 4, 1, 0, 2, 1};
  std::vector<float> y(N * C), dw(Vv * C, 0.0f);
  embedding_forward(y.data(), tok.data(), wte.data(), N, C);
  embedding_backward_weight(dw.data(), dy.data(), tok.data(), N, C);
  auto loss = [&](const V& w) {
    double L = 0;
    for (int n = 0; n < N; ++n)
      for (int c = 0; c < C; ++c) L += w[tok[n] * C + c] * dy[n * C + c];
    return L;
  };
  EXPECT_LT(rel_error(dw, numeric_grad(to_double(wte), loss)), kTol);
}

TEST(KernelGrad, MoeRouteGates) {
  const int N = 5, E = 6, K = 2;
  auto logits = random_vec(N * E, 16), dgate = random_vec(N * K, 17), bias = random_vec(E, 18, 0.1f);
  std::vector<float> scores(N * E), gate(N * K), dlogits(N * E);
  std::vector<int32_t> expert(N * K);
  sigmoid_forward(scores.data(), logits.data(), N * E);
  moe_route(expert.data(), gate.data(), scores.data(), bias.data(), N, E, K);
  // The chosen experts are the top-K of s + bias, best first.
  for (int n = 0; n < N; ++n) {
    std::vector<int> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return scores[n * E + a] + bias[a] > scores[n * E + b] + bias[b];
    });
    for (int k = 0; k < K; ++k) EXPECT_EQ(expert[n * K + k], order[k]);
    float s = 0;
    for (int k = 0; k < K; ++k) s += gate[n * K + k];
    EXPECT_NEAR(s, 1.0f, 1e-6);
  }
  moe_route_backward(dlogits.data(), dgate.data(), scores.data(), expert.data(), gate.data(), N, E, K);
  auto loss = [&](const V& x) {  // selection held fixed (it is piecewise constant)
    double L = 0;
    for (int n = 0; n < N; ++n) {
      double S = 0;
      for (int k = 0; k < K; ++k) S += 1 / (1 + std::exp(-x[n * E + expert[n * K + k]]));
      for (int k = 0; k < K; ++k)
        L += dgate[n * K + k] / (1 + std::exp(-x[n * E + expert[n * K + k]])) / S;
    }
    return L;
  };
  EXPECT_LT(rel_error(dlogits, numeric_grad(to_double(logits), loss)), kTol);
}

TEST(KernelGrad, MoePermuteCombine) {
  const int N = 4, E = 3, K = 2, C = 3;
  std::vector<int32_t> expert = {0, 2, 1, 0, 2, 1, 0, 1};
  std::vector<int32_t> row_of(N * K), offsets(E + 1);
  moe_permute_plan(row_of.data(), offsets.data(), expert.data(), N, E, K);
  EXPECT_EQ(offsets, (std::vector<int32_t>{0, 3, 6, 8}));
  // Rows of an expert are contiguous and in token order.
  for (int i = 0; i < N * K; ++i) {
    EXPECT_GE(row_of[i], offsets[expert[i]]);
    EXPECT_LT(row_of[i], offsets[expert[i] + 1]);
  }
  auto x = random_vec(N * C, 19), yp = random_vec(N * K * C, 20), gate = random_vec(N * K, 21),
       dy = random_vec(N * C, 22), dxp = random_vec(N * K * C, 23);
  std::vector<float> xp(N * K * C);
  moe_gather(xp.data(), x.data(), row_of.data(), N, K, C);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k)
      for (int c = 0; c < C; ++c) EXPECT_EQ(xp[row_of[n * K + k] * C + c], x[n * C + c]);
  std::vector<float> dx(N * C, 0.0f);
  moe_gather_backward(dx.data(), dxp.data(), row_of.data(), N, K, C);
  auto gather_loss = [&](const V& xx) {
    double L = 0;
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < K; ++k)
        for (int c = 0; c < C; ++c) L += xx[n * C + c] * dxp[row_of[n * K + k] * C + c];
    return L;
  };
  EXPECT_LT(rel_error(dx, numeric_grad(to_double(x), gather_loss)), kTol);

  std::vector<float> dyp(N * K * C), dgate(N * K);
  moe_combine_backward(dyp.data(), dgate.data(), dy.data(), yp.data(), gate.data(), row_of.data(), N, K, C);
  auto combine_loss = [&](const V& y, const V& g) {
    double L = 0;
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < K; ++k)
        for (int c = 0; c < C; ++c) L += g[n * K + k] * y[row_of[n * K + k] * C + c] * dy[n * C + c];
    return L;
  };
  const V yd = to_double(yp), gd = to_double(gate);
  EXPECT_LT(rel_error(dyp, numeric_grad(yd, [&](const V& v) { return combine_loss(v, gd); })), kTol);
  EXPECT_LT(rel_error(dgate, numeric_grad(gd, [&](const V& v) { return combine_loss(yd, v); })), kTol);
  std::vector<float> out(N * C, 0.0f);
  moe_combine(out.data(), yp.data(), gate.data(), row_of.data(), N, K, C);
  EXPECT_NEAR(dot(to_double(out), to_double(dy)), combine_loss(yd, gd), 1e-4);
}

TEST(KernelOptim, AdamWOneStepByHand) {
  std::vector<float> p = {1.0f, -2.0f}, g = {0.5f, 0.1f}, m = {0, 0}, v = {0, 0};
  AdamWParams hp{0.1f, 0.9f, 0.95f, 1e-8f, 0.01f, 1};
  adamw_update(p.data(), g.data(), m.data(), v.data(), 2, hp);
  // Step 1 with bias correction: m̂ = g, v̂ = g², so the update is lr·(sign(g) + wd·p).
  EXPECT_NEAR(p[0], 1.0f - 0.1f * (1.0f + 0.01f * 1.0f), 1e-6);
  EXPECT_NEAR(p[1], -2.0f - 0.1f * (1.0f + 0.01f * -2.0f), 1e-6);
  EXPECT_NEAR(m[0], 0.05f, 1e-7);
  EXPECT_NEAR(v[1], 0.05f * 0.01f, 1e-9);
}

TEST(KernelMath, FastExpMatchesStdExp) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f)
    worst = std::max(worst, std::abs((double)duet::cpu::fast_exp(x) - std::exp((double)x)) / std::exp((double)x));
  EXPECT_LT(worst, 5e-7);
  EXPECT_EQ(duet::cpu::fast_exp(0.0f), 1.0f);
  EXPECT_GT(duet::cpu::fast_exp(-1000.0f), 0.0f);  // clamped, never NaN or negative
  EXPECT_LT(duet::cpu::fast_exp(-1000.0f), 1e-37f);
}
