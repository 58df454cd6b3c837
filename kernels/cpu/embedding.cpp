#include "kernels/embedding.h"
#include "kernels/cpu/parallel.h"
#include "kernels/profile.h"

#include <cstring>

namespace duet::cpu {

void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C) {
  DUET_PROFILE("embedding");
  parallel_ranges(N, 2.0 * C, [&](long n0, long n1) {
    for (long n = n0; n < n1; ++n) std::memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, sizeof(float) * C);
  });
}

void embedding_backward_weight(float* dwte, const float* dout, const int32_t* tokens, int N, int C) {
  DUET_PROFILE("embedding");
  for (int n = 0; n < N; ++n) {
    float* d = dwte + (size_t)tokens[n] * C;
    const float* g = dout + (size_t)n * C;
    for (int c = 0; c < C; ++c) d[c] += g[c];
  }
}

}  // namespace duet::cpu
