#pragma once
// exp for float that the compiler can vectorise (std::exp is a library call per element).
// Cephes-style: x = n·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for e^r, and 2^n put
// into the exponent bits. Relative error about 2e-7 (1–2 ulp) over the clamped range
// [-87.3, 88.7]; below it the result is ~1e-38 instead of a denormal or 0, which no
// softmax or sigmoid here can tell apart.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace duet::cpu {

inline float fast_exp(float x) {
  x = std::min(std::max(x, -87.3f), 88.7f);
  // n = round(x / ln2) by adding and removing 1.5·2^23 (round-to-nearest, branch-free: the
  // loop stays vectorisable; std::floor or a select are not vectorised here).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const int32_t ni = (int32_t)n;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;  // ln2 split in two for accuracy
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t bits = (ni + 127) << 23;
  return y * std::bit_cast<float>(bits);
}

}  // namespace duet::cpu
