// RMSNorm on the GPU: one block per row, a block-wide reduction of Σx² (forward) and of
// Σ dy·w·x (backward). Same signatures and semantics as kernels/cpu/norm.cpp.
#include <cuda_runtime.h>

#include "kernels/cuda/check.h"
#include "kernels/norm.h"

namespace duet::cuda {

namespace {

constexpr int kThreads = 256;

__device__ float block_sum(float v) {
  __shared__ float warp_sums[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0f;
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  __shared__ float total;
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  return total;
}

__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* in, const float* w, int C,
                                       float eps) {
  const float* x = in + (size_t)blockIdx.x * C;
  float* y = out + (size_t)blockIdx.x * C;
  float ss = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
  const float r = rsqrtf(block_sum(ss) / C + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = x[c] * r * w[c];
}

__global__ void rmsnorm_backward_input_kernel(float* din, const float* dout, const float* in,
                                              const float* w, const float* rstd, int C) {
  const size_t row = (size_t)blockIdx.x * C;
  const float r = rstd[blockIdx.x];
  float dot = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dot += dout[row + c] * w[c] * in[row + c];
  const float k = block_sum(dot) * r * r / C;
  for (int c = threadIdx.x; c < C; c += blockDim.x)
    din[row + c] += r * (dout[row + c] * w[c] - in[row + c] * k);
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* in, const float* weight, int N, int C,
                     float eps) {
  if (N <= 0) return;
  rmsnorm_forward_kernel<<<N, kThreads>>>(out, rstd, in, weight, C, eps);
  CUDA_CHECK(cudaGetLastError());  // launch errors; faults inside the kernel surface at the next sync
}

void rmsnorm_backward_input(float* din, const float* dout, const float* in, const float* weight,
                            const float* rstd, int N, int C) {
  if (N <= 0) return;
  rmsnorm_backward_input_kernel<<<N, kThreads>>>(din, dout, in, weight, rstd, C);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace duet::cuda
