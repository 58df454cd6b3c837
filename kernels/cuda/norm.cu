// RMSNorm on the GPU: one block per row, a block-wide reduction of Σx² (forward) and of
// Σ dy·w·x (backward-input); the weight gradient sums over rows per channel, in row order.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace duet::cuda {

namespace {

__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* in, const float* w, int C, float eps) {
  const float* x = in + (size_t)blockIdx.x * C;
  float* y = out + (size_t)blockIdx.x * C;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
  const float r = 1.0f / sqrtf(block_sum(ss) / C + eps);  // as the CPU computes it (rsqrtf is 2 ulp)
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = x[c] * r * w[c];
}

__global__ void rmsnorm_backward_input_kernel(float* din, const float* dout, const float* in, const float* w,
                                              const float* rstd, int C) {
  const size_t row = (size_t)blockIdx.x * C;
  const float r = rstd[blockIdx.x];
  float dot = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dot += dout[row + c] * w[c] * in[row + c];
  const float k = block_sum(dot) * r * r / C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) din[row + c] += r * (dout[row + c] * w[c] - in[row + c] * k);
}

__global__ void rmsnorm_backward_weight_kernel(float* dw, const float* dout, const float* in, const float* rstd,
                                               int N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float acc = dw[c];
  for (int n = 0; n < N; ++n) acc += dout[(size_t)n * C + c] * in[(size_t)n * C + c] * rstd[n];
  dw[c] = acc;
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* in, const float* weight, int N, int C, float eps) {
  if (N <= 0) return;
  rmsnorm_forward_kernel<<<N, kThreads>>>(out, rstd, in, weight, C, eps);
  DUET_CUDA_LAUNCHED();
}

void rmsnorm_backward_input(float* din, const float* dout, const float* in, const float* weight, const float* rstd,
                            int N, int C) {
  if (N <= 0) return;
  rmsnorm_backward_input_kernel<<<N, kThreads>>>(din, dout, in, weight, rstd, C);
  DUET_CUDA_LAUNCHED();
}

void rmsnorm_backward_weight(float* dweight, const float* dout, const float* in, const float* rstd, int N, int C) {
  if (N <= 0 || C <= 0) return;
  rmsnorm_backward_weight_kernel<<<blocks_for(C), kThreads>>>(dweight, dout, in, rstd, N, C);
  DUET_CUDA_LAUNCHED();
}

}  // namespace duet::cuda
