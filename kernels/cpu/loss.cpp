#include "kernels/loss.h"
#include "kernels/cpu/isa_clones.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/profile.h"

#include <cmath>

namespace duet::cpu {

DUET_ISA_CLONES double cross_entropy_forward(float* logits, const int32_t* targets, int N, int V) {
  DUET_PROFILE("cross_entropy");
  double total = 0.0;
  for (int n = 0; n < N; ++n) {
    float* row = logits + (size_t)n * V;
    float m = row[0];
    for (int v = 1; v < V; ++v) m = std::max(m, row[v]);
    for (int v = 0; v < V; ++v) row[v] = fast_exp(row[v] - m);  // vectorised
    float sum = 0.0f;
    for (int v = 0; v < V; ++v) sum += row[v];
    const float inv = 1.0f / sum;
    for (int v = 0; v < V; ++v) row[v] *= inv;
    total -= std::log(std::max(row[targets[n]], 1e-30f));
  }
  return total;
}

DUET_ISA_CLONES void cross_entropy_backward(float* probs, const int32_t* targets, int N, int V, float scale) {
  DUET_PROFILE("cross_entropy");
  for (int n = 0; n < N; ++n) {
    float* row = probs + (size_t)n * V;
    row[targets[n]] -= 1.0f;
    for (int v = 0; v < V; ++v) row[v] *= scale;
  }
}

}  // namespace duet::cpu
