#pragma once
// SwiGLU. ab is (N, 2F): the gate a = ab[:, :F] and the value b = ab[:, F:], produced by one
// fused up-projection. h is (N, F): h = silu(a) ⊙ b.

namespace duet::cpu {

void swiglu_forward(float* h, const float* ab, int N, int F);
// dab = ∂loss/∂ab (written)
void swiglu_backward(float* dab, const float* dh, const float* ab, int N, int F);

// out = 1 / (1 + exp(−in)), n elements (in and out may alias)
void sigmoid_forward(float* out, const float* in, long n);

}  // namespace duet::cpu
