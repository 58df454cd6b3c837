#include "kernels/elementwise.h"

#include <algorithm>
#include <cstring>

namespace duet::cpu {

void vec_copy(float* dst, const float* src, long n) {
  if (n > 0) std::memcpy(dst, src, sizeof(float) * (size_t)n);
}

void vec_add(float* y, const float* x, long n) {
  for (long i = 0; i < n; ++i) y[i] += x[i];
}

void vec_fill(float* x, long n, float value) {
  if (n > 0) std::fill(x, x + n, value);
}

}  // namespace duet::cpu
