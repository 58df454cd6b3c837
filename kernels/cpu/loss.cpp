#include "kernels/loss.h"
#include "kernels/cpu/isa_clones.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/reduce.h"
#include "kernels/profile.h"

#include <cmath>
#include <vector>

namespace duet::cpu {

// Rows [n0, n1): softmax in place, and each row's probability of its target.
DUET_ISA_CLONES void cross_entropy_forward_rows(float* logits, float* p_target, const int32_t* targets, int V,
                                                long n0, long n1) {
  for (long n = n0; n < n1; ++n) {
    float* row = logits + (size_t)n * V;
    const float m = max_lanes(row, V);
    for (int v = 0; v < V; ++v) row[v] = fast_exp(row[v] - m);  // vectorised
    const float inv = 1.0f / sum_lanes(row, V);
    for (int v = 0; v < V; ++v) row[v] *= inv;
    p_target[n] = row[targets[n]];
  }
}

double cross_entropy_forward(float* logits, const int32_t* targets, int N, int V) {
  DUET_PROFILE("cross_entropy");
  thread_local std::vector<float> p_target_buf;
  p_target_buf.resize(N);
  float* p_target = p_target_buf.data();  // a lambda names the running thread's thread_local
  parallel_ranges(N, 4.0 * V, [&](long n0, long n1) {
    cross_entropy_forward_rows(logits, p_target, targets, V, n0, n1);
  });
  double total = 0.0;  // summed in row order, whatever the split
  for (int n = 0; n < N; ++n) total -= std::log(std::max(p_target[n], 1e-30f));
  return total;
}

DUET_ISA_CLONES void cross_entropy_backward_rows(float* probs, const int32_t* targets, int V, float scale, long n0,
                                                 long n1) {
  for (long n = n0; n < n1; ++n) {
    float* row = probs + (size_t)n * V;
    row[targets[n]] -= 1.0f;
    for (int v = 0; v < V; ++v) row[v] *= scale;
  }
}

void cross_entropy_backward(float* probs, const int32_t* targets, int N, int V, float scale) {
  DUET_PROFILE("cross_entropy");
  parallel_ranges(N, 1.0 * V, [&](long n0, long n1) { cross_entropy_backward_rows(probs, targets, V, scale, n0, n1); });
}

}  // namespace duet::cpu
