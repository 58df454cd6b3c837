#pragma once
// Row reductions the compiler can vectorise. A float sum in one running total is a chain of
// dependent adds (4 cycles each) that -O3 may not reorder; these keep kLanes interleaved
// partial sums — lane l takes elements l, l + kLanes, … — and add the lanes in a fixed order at
// the end. The order depends only on n, so results are the same on every call and thread.
// Inline: compiled per ISA inside the kernels that use them (isa_clones.h).
#include <algorithm>

namespace duet::cpu {

constexpr int kLanes = 16;

// Adds lanes pairwise (8+8, 4+4, 2+2, 1+1): a fixed tree.
inline float reduce_lanes(float (&acc)[kLanes]) {
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

inline float sum_lanes(const float* x, int n) {
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += x[i + l];
  for (int l = 0; i < n; ++i, ++l) acc[l] += x[i];
  return reduce_lanes(acc);
}

inline float dot_lanes(const float* a, const float* b, int n) {
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  for (int l = 0; i < n; ++i, ++l) acc[l] += a[i] * b[i];
  return reduce_lanes(acc);
}

// Σ a·b·c (RMSNorm's backward: dout · weight · x).
inline float dot3_lanes(const float* a, const float* b, const float* c, int n) {
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l] * c[i + l];
  for (int l = 0; i < n; ++i, ++l) acc[l] += a[i] * b[i] * c[i];
  return reduce_lanes(acc);
}

// The maximum is exact in any order: same bits as a serial std::max for finite inputs.
inline float max_lanes(const float* x, int n) {
  if (n < kLanes) return *std::max_element(x, x + n);
  float acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = x[l];
  int i = kLanes;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] = acc[l] < x[i + l] ? x[i + l] : acc[l];
  for (int l = 0; i < n; ++i, ++l) acc[l] = acc[l] < x[i] ? x[i] : acc[l];
  return *std::max_element(acc, acc + kLanes);
}

}  // namespace duet::cpu
