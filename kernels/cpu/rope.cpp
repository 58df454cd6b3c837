#include "kernels/rope.h"
#include "kernels/cpu/parallel.h"
#include "kernels/profile.h"

#include <cmath>

namespace duet::cpu {

void rope_table(float* cos_sin, int T, int D, float theta) {
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < D / 2; ++i) {
      const double freq = std::pow((double)theta, -2.0 * i / D);
      const double ang = t * freq;
      cos_sin[((size_t)t * (D / 2) + i) * 2 + 0] = (float)std::cos(ang);
      cos_sin[((size_t)t * (D / 2) + i) * 2 + 1] = (float)std::sin(ang);
    }
}

namespace {
void rotate(float* qkv, const float* cos_sin, int B, int T, int H, int D, float sign) {
  const int C = H * D;
  parallel_ranges((long)B * T, 4.0 * C, [&](long r0, long r1) {  // rows (b, t) are independent
    for (long r = r0; r < r1; ++r) {
      float* row = qkv + (size_t)r * 3 * C;
      const float* cs = cos_sin + (size_t)(r % T) * D;
      for (int part = 0; part < 2; ++part)  // q, then k
        for (int h = 0; h < H; ++h) {
          float* x = row + part * C + h * D;
          for (int i = 0; i < D / 2; ++i) {
            const float c = cs[2 * i], s = sign * cs[2 * i + 1];
            const float x0 = x[2 * i], x1 = x[2 * i + 1];
            x[2 * i] = x0 * c - x1 * s;
            x[2 * i + 1] = x0 * s + x1 * c;
          }
        }
    }
  });
}
}  // namespace

void rope_forward(float* qkv, const float* cos_sin, int B, int T, int H, int D) {
  DUET_PROFILE("rope");
  rotate(qkv, cos_sin, B, T, H, D, 1.0f);
}

void rope_backward(float* dqkv, const float* cos_sin, int B, int T, int H, int D) {
  DUET_PROFILE("rope");
  rotate(dqkv, cos_sin, B, T, H, D, -1.0f);
}

}  // namespace duet::cpu
