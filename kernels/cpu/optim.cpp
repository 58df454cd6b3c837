#include "kernels/optim.h"
#include "kernels/cpu/isa_clones.h"
#include "kernels/cpu/parallel.h"
#include "kernels/profile.h"

#include <cmath>
#include <vector>

namespace duet::cpu {

// Elements [i0, i1); adamw_update splits them over threads in blocks of 16 floats (a cache
// line), so no two threads share a line.
DUET_ISA_CLONES void adamw_update_range(float* params, const float* grads, float* m, float* v, const AdamWParams& p,
                                        float c1, float c2, long i0, long i1) {
  // Locals, not p's fields: the stores to params/m/v could alias p, and would force reloads.
  const float beta1 = p.beta1, beta2 = p.beta2, lr = p.lr, eps = p.eps, wd = p.weight_decay, gs = p.grad_scale;
  for (long i = i0; i < i1; ++i) {
    const float g = grads[i] * gs;  // exact when gs is 1: the same bits as unscaled
    m[i] = beta1 * m[i] + (1.0f - beta1) * g;
    v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
    const float mhat = m[i] * c1, vhat = v[i] * c2;
    params[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + wd * params[i]);
  }
}

void adamw_update(float* params, const float* grads, float* m, float* v, long n, const AdamWParams& p) {
  DUET_PROFILE("adamw");
  const float c1 = 1.0f / (1.0f - std::pow(p.beta1, (float)p.step));
  const float c2 = 1.0f / (1.0f - std::pow(p.beta2, (float)p.step));
  const long blocks = (n + 15) / 16;
  parallel_ranges(blocks, 8.0 * 16, [&](long b0, long b1) {
    adamw_update_range(params, grads, m, v, p, c1, c2, b0 * 16, std::min(n, b1 * 16));
  });
}

// Σ g² over blocks [b0, b1) of kSumBlock elements, one double per block. Within a block, kLanes
// interleaved partial sums (vectorisable, unlike one running sum), added in lane order.
constexpr long kSumBlock = 4096;
constexpr int kLanes = 8;

DUET_ISA_CLONES void sum_squares_blocks(double* block_sums, const float* g, long n, long b0, long b1) {
  for (long b = b0; b < b1; ++b) {
    const long i0 = b * kSumBlock, i1 = std::min(n, i0 + kSumBlock);
    double lane[kLanes] = {};
    long i = i0;
    for (; i + kLanes <= i1; i += kLanes)
      for (int l = 0; l < kLanes; ++l) lane[l] += (double)g[i + l] * g[i + l];
    for (int l = 0; i < i1; ++i, ++l) lane[l] += (double)g[i] * g[i];
    double s = 0.0;
    for (int l = 0; l < kLanes; ++l) s += lane[l];
    block_sums[b] = s;
  }
}

// Blocks of a fixed size, summed in block order: the same bits for any thread count.
double sum_squares(const float* g, long n) {
  DUET_PROFILE("adamw");
  const long blocks = (n + kSumBlock - 1) / kSumBlock;
  thread_local std::vector<double> block_sums_buf;
  block_sums_buf.resize(blocks);
  double* block_sums = block_sums_buf.data();  // a lambda names the running thread's thread_local
  parallel_ranges(blocks, 2.0 * kSumBlock, [&](long b0, long b1) { sum_squares_blocks(block_sums, g, n, b0, b1); });
  double s = 0.0;
  for (long b = 0; b < blocks; ++b) s += block_sums[b];
  return s;
}

void sum_squares_ranges(const float* g, const int64_t* ranges, int count, double* sums) {
  for (int i = 0; i < count; ++i) sums[i] = sum_squares(g + ranges[2 * i], (long)(ranges[2 * i + 1] - ranges[2 * i]));
}

void scale(float* x, long n, float s) {
  DUET_PROFILE("adamw");
  const long blocks = (n + 15) / 16;
  parallel_ranges(blocks, 16.0, [&](long b0, long b1) {
    for (long i = b0 * 16, e = std::min(n, b1 * 16); i < e; ++i) x[i] *= s;
  });
}

}  // namespace duet::cpu
