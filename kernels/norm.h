#pragma once
// RMSNorm over the last dimension. in/out are (N, C); rstd is (N), kept for the backward.
//   out = in · rstd · weight,   rstd = 1 / sqrt(mean(in²) + eps)

namespace duet::cpu {

void rmsnorm_forward(float* out, float* rstd, const float* in, const float* weight, int N, int C,
                     float eps);
// din += ∂loss/∂in. Adds, because the input of every RMSNorm is a residual stream whose
// gradient also arrives through the skip connection.
void rmsnorm_backward_input(float* din, const float* dout, const float* in, const float* weight,
                            const float* rstd, int N, int C);
// dweight += Σ_n dout · in · rstd
void rmsnorm_backward_weight(float* dweight, const float* dout, const float* in, const float* rstd,
                             int N, int C);

}  // namespace duet::cpu
