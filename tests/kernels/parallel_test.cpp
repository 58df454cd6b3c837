// The non-GEMM kernels split their work over the compute threads (kernels/cpu/parallel.h) and
// promise the same bits for any thread count: every op here runs at 1 and at 2 threads on
// shapes large enough to be split, with sizes that are not multiples of the vector width or of
// the attention kernel's blocks. Attention is also checked against a plain double-precision
// reference, since its products are our own.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/gemm.h"
#include "kernels/loss.h"
#include "kernels/norm.h"
#include "kernels/optim.h"

using namespace duet;

namespace {

std::vector<float> rnd(size_t n, unsigned seed, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), sizeof(float) * x.size()) == 0;
}

// Runs `op` at 1 and 2 threads on fresh copies of `outs` and expects the same bits.
void expect_thread_count_free(const std::string& name, std::vector<std::vector<float>> outs,
                              const std::function<void(std::vector<std::vector<float>>&)>& op) {
  std::vector<std::vector<float>> results[2];
  for (int threads : {1, 2}) {
    cpu::set_gemm_threads(threads);
    results[threads - 1] = outs;
    op(results[threads - 1]);
  }
  cpu::set_gemm_threads(1);
  for (size_t i = 0; i < outs.size(); ++i) EXPECT_TRUE(same_bits(results[0][i], results[1][i])) << name << " output " << i;
}

constexpr int B = 2, T = 70, H = 3, D = 20, C = H * D;

}  // namespace

TEST(ParallelKernels, SameBitsAtOneAndTwoThreads) {
  const auto qkv = rnd((size_t)B * T * 3 * C, 1), dout = rnd((size_t)B * T * C, 2);
  std::vector<float> att((size_t)B * T * C), probs(cpu::attention_saved_floats(B, T, H, D));
  cpu::attention_forward(att.data(), probs.data(), qkv.data(), B, T, H, D);
  expect_thread_count_free("attention_forward", {std::vector<float>(B * T * C), probs}, [&](auto& o) {
    cpu::attention_forward(o[0].data(), o[1].data(), qkv.data(), B, T, H, D);
  });
  expect_thread_count_free("attention_backward", {std::vector<float>(qkv.size())}, [&](auto& o) {
    cpu::attention_backward(o[0].data(), dout.data(), qkv.data(), att.data(), probs.data(), B, T, H, D);
  });

  const int N = 600, W = 100;  // W: not a multiple of 16
  const auto x = rnd((size_t)N * W, 3), w = rnd(W, 4), g = rnd((size_t)N * W, 5);
  std::vector<float> rstd(N);
  cpu::rmsnorm_forward(std::vector<float>(x.size()).data(), rstd.data(), x.data(), w.data(), N, W, 1e-5f);
  expect_thread_count_free("rmsnorm", {std::vector<float>(x.size()), std::vector<float>(N), rnd(x.size(), 6), rnd(W, 7)},
                           [&](auto& o) {
                             cpu::rmsnorm_forward(o[0].data(), o[1].data(), x.data(), w.data(), N, W, 1e-5f);
                             cpu::rmsnorm_backward_input(o[2].data(), g.data(), x.data(), w.data(), rstd.data(), N, W);
                             cpu::rmsnorm_backward_weight(o[3].data(), g.data(), x.data(), rstd.data(), N, W);
                           });
  const auto ab = rnd((size_t)N * 2 * W, 8), dh = rnd((size_t)N * W, 9);
  expect_thread_count_free("swiglu", {std::vector<float>(N * W), std::vector<float>(ab.size())}, [&](auto& o) {
    cpu::swiglu_forward(o[0].data(), ab.data(), N, W);
    cpu::swiglu_backward(o[1].data(), dh.data(), ab.data(), N, W);
  });

  std::vector<int32_t> targets(N);
  for (int n = 0; n < N; ++n) targets[n] = (n * 37) % W;
  double losses[2];
  expect_thread_count_free("cross_entropy", {rnd((size_t)N * W, 10, -5, 5)}, [&](auto& o) {
    losses[cpu::gemm_threads() - 1] = cpu::cross_entropy_forward(o[0].data(), targets.data(), N, W);
    cpu::cross_entropy_backward(o[0].data(), targets.data(), N, W, 0.5f);
  });
  EXPECT_EQ(losses[0], losses[1]);

  const long n = 100003;
  const auto grads = rnd(n, 11);
  kernels::AdamWParams p;
  p.step = 3;
  expect_thread_count_free("adamw", {rnd(n, 12), rnd(n, 13, 0, 0.1f), rnd(n, 14, 0, 0.1f)}, [&](auto& o) {
    cpu::adamw_update(o[0].data(), grads.data(), o[1].data(), o[2].data(), n, p);
  });
  double sums[2];
  for (int threads : {1, 2}) {
    cpu::set_gemm_threads(threads);
    sums[threads - 1] = cpu::sum_squares(grads.data(), n);
  }
  cpu::set_gemm_threads(1);
  EXPECT_EQ(sums[0], sums[1]);
}

namespace {

// Head widths: 20 is padded to the kernels' 32 columns; 32 and 64 are the benchmarks' (d256, d512).
void expect_attention_matches_a_reference(int D) {
  const int C = H * D;
  cpu::set_gemm_threads(2);
  const auto qkv = rnd((size_t)B * T * 3 * C, 21), dout = rnd((size_t)B * T * C, 22);
  std::vector<float> out((size_t)B * T * C), probs((size_t)B * H * T * T), dqkv(qkv.size());
  cpu::attention_forward(out.data(), probs.data(), qkv.data(), B, T, H, D);
  cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), probs.data(), B, T, H, D);
  cpu::set_gemm_threads(1);

  // Reference in double: P = softmax(causal(Q Kᵀ / √D)), O = P V, and its backward.
  std::vector<double> ref_dqkv(qkv.size(), 0.0);
  double max_out = 0, max_dqkv = 0;
  const double scale = 1.0 / std::sqrt((double)D);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      auto q = [&](int t, int d) { return (double)qkv[((size_t)b * T + t) * 3 * C + h * D + d]; };
      auto k = [&](int t, int d) { return (double)qkv[((size_t)b * T + t) * 3 * C + C + h * D + d]; };
      auto v = [&](int t, int d) { return (double)qkv[((size_t)b * T + t) * 3 * C + 2 * C + h * D + d]; };
      std::vector<double> P((size_t)T * T, 0.0), dS((size_t)T * T, 0.0);
      for (int t = 0; t < T; ++t) {
        double m = -1e300, sum = 0;
        for (int s = 0; s <= t; ++s) {
          double a = 0;
          for (int d = 0; d < D; ++d) a += q(t, d) * k(s, d);
          P[(size_t)t * T + s] = a * scale;
          m = std::max(m, a * scale);
        }
        for (int s = 0; s <= t; ++s) sum += P[(size_t)t * T + s] = std::exp(P[(size_t)t * T + s] - m);
        for (int s = 0; s <= t; ++s) P[(size_t)t * T + s] /= sum;
        for (int d = 0; d < D; ++d) {
          double o = 0;
          for (int s = 0; s <= t; ++s) o += P[(size_t)t * T + s] * v(s, d);
          max_out = std::max(max_out, std::abs(o - out[((size_t)b * T + t) * C + h * D + d]));
        }
        // dP = dO Vᵀ, dS = P ⊙ (dP − Σ P dP)
        auto dO = [&](int tt, int d) { return (double)dout[((size_t)b * T + tt) * C + h * D + d]; };
        double dot = 0;
        for (int s = 0; s <= t; ++s) {
          double dp = 0;
          for (int d = 0; d < D; ++d) dp += dO(t, d) * v(s, d);
          dS[(size_t)t * T + s] = dp;
          dot += P[(size_t)t * T + s] * dp;
        }
        for (int s = 0; s <= t; ++s) dS[(size_t)t * T + s] = P[(size_t)t * T + s] * (dS[(size_t)t * T + s] - dot);
        for (int s = 0; s <= t; ++s)
          for (int d = 0; d < D; ++d) {
            ref_dqkv[((size_t)b * T + t) * 3 * C + h * D + d] += scale * dS[(size_t)t * T + s] * k(s, d);
            ref_dqkv[((size_t)b * T + s) * 3 * C + C + h * D + d] += scale * dS[(size_t)t * T + s] * q(t, d);
            ref_dqkv[((size_t)b * T + s) * 3 * C + 2 * C + h * D + d] += P[(size_t)t * T + s] * dO(t, d);
          }
      }
    }
  for (size_t i = 0; i < dqkv.size(); ++i) max_dqkv = std::max(max_dqkv, std::abs(ref_dqkv[i] - dqkv[i]));
  EXPECT_LT(max_out, 1e-5) << "D " << D;
  EXPECT_LT(max_dqkv, 1e-5) << "D " << D;
}

}  // namespace

TEST(ParallelKernels, AttentionMatchesAReference) {
  for (int D : {20, 32, 64}) expect_attention_matches_a_reference(D);
}

// A machine runs one register block (the one for its ISA); the others are checked here, on any
// machine, against it: the same sums in the same order, so the same bits. T 70 and 9 end in a
// partial row block for every block height (6, 8), T 5 is shorter than any block; D 20 ends in a
// partial column block for every width (8, 16, 32), D 40 for 16 and 32.
TEST(ParallelKernels, EveryAttentionBlockGivesTheSameBits) {
  const int machines = cpu::attention_block();
  for (int block : {0, 1, 2}) {  // the override reaches the kernels' choice
    cpu::set_attention_block_for_testing(block);
    EXPECT_EQ(cpu::attention_block(), block);
  }
  cpu::set_attention_block_for_testing(cpu::kAttentionBlockAuto);
  EXPECT_EQ(cpu::attention_block(), machines);
  for (auto [Bt, Tt, Ht, Dt] :
       {std::array{2, 70, 3, 20}, std::array{1, 9, 2, 40}, std::array{1, 5, 2, 20}, std::array{1, 128, 2, 64}}) {
    const int Ct = Ht * Dt;
    const auto qkv = rnd((size_t)Bt * Tt * 3 * Ct, 31), dout = rnd((size_t)Bt * Tt * Ct, 32);
    std::vector<float> out[4], probs[4], dqkv[4];
    for (int block : {cpu::kAttentionBlockAuto, 0, 1, 2}) {
      const int i = block + 1;
      cpu::set_attention_block_for_testing(block);
      out[i].assign((size_t)Bt * Tt * Ct, 0.0f);
      probs[i].assign(cpu::attention_saved_floats(Bt, Tt, Ht, Dt), 0.0f);
      dqkv[i].assign(qkv.size(), 0.0f);
      cpu::attention_forward(out[i].data(), probs[i].data(), qkv.data(), Bt, Tt, Ht, Dt);
      cpu::attention_backward(dqkv[i].data(), dout.data(), qkv.data(), out[i].data(), probs[i].data(), Bt, Tt, Ht, Dt);
    }
    cpu::set_attention_block_for_testing(cpu::kAttentionBlockAuto);
    for (int i = 1; i < 4; ++i) {
      EXPECT_TRUE(same_bits(out[0], out[i])) << "T " << Tt << " D " << Dt << " block " << i - 1 << ": out";
      EXPECT_TRUE(same_bits(probs[0], probs[i])) << "T " << Tt << " D " << Dt << " block " << i - 1 << ": probs";
      EXPECT_TRUE(same_bits(dqkv[0], dqkv[i])) << "T " << Tt << " D " << Dt << " block " << i - 1 << ": dqkv";
    }
  }
}
