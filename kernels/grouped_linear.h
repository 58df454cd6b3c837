#pragma once
// The grouped linear ops (kernels/gemm.h) as one linear op per non-empty group: the definition
// every backend must match, and the implementation of those without a grouped GEMM of their own
// (the CPU; CUDA in FP32). Header-only so the CUDA sources, and their host emulation, share it.

namespace duet::kernels {

using LinearForward = void (*)(float* out, const float* in, const float* w, int N, int I, int O, bool accumulate);
using LinearBackwardInput = void (*)(float* din, const float* dout, const float* w, int N, int I, int O,
                                     bool accumulate);
using LinearBackwardWeight = void (*)(float* dw, const float* dout, const float* in, int N, int I, int O);

template <LinearForward Op>
void grouped_forward_by_group(float* out, const float* in, const float* const* w, const int* rows, int groups, int I,
                              int O) {
  long r0 = 0;
  for (int g = 0; g < groups; r0 += rows[g++])
    if (rows[g] > 0) Op(out + r0 * O, in + r0 * I, w[g], rows[g], I, O, false);
}

template <LinearBackwardInput Op>
void grouped_backward_input_by_group(float* din, const float* dout, const float* const* w, const int* rows,
                                     int groups, int I, int O) {
  long r0 = 0;
  for (int g = 0; g < groups; r0 += rows[g++])
    if (rows[g] > 0) Op(din + r0 * I, dout + r0 * O, w[g], rows[g], I, O, false);
}

template <LinearBackwardWeight Op>
void grouped_backward_weight_by_group(float* const* dw, const float* dout, const float* in, const int* rows,
                                      int groups, int I, int O) {
  long r0 = 0;
  for (int g = 0; g < groups; r0 += rows[g++])
    if (rows[g] > 0) Op(dw[g], dout + r0 * O, in + r0 * I, rows[g], I, O);
}

}  // namespace duet::kernels
