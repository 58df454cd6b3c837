// kernels/elementwise.h on the GPU: one thread per element, on the calling thread's stream.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace duet::cuda {

namespace {

__global__ void add_kernel(float* y, const float* x, long n) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] += x[i];
}

__global__ void fill_kernel(float* x, long n, float value) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] = value;
}

}  // namespace

void vec_copy(float* dst, const float* src, long n) {
  if (n <= 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(float) * (size_t)n, cudaMemcpyDefault, cudaStreamPerThread));
}

void vec_add(float* y, const float* x, long n) {
  if (n <= 0) return;
  add_kernel<<<blocks_for(n), kThreads>>>(y, x, n);
  DUET_CUDA_LAUNCHED();
}

void vec_fill(float* x, long n, float value) {
  if (n <= 0) return;
  fill_kernel<<<blocks_for(n), kThreads>>>(x, n, value);
  DUET_CUDA_LAUNCHED();
}

}  // namespace duet::cuda
