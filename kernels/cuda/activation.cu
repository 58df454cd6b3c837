// SwiGLU and the sigmoid on the GPU: elementwise, one thread per element.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace duet::cuda {

namespace {

__global__ void swiglu_forward_kernel(float* h, const float* ab, int N, int F) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)N * F) return;
  const long n = i / F, f = i % F;
  const float a = ab[n * 2 * F + f], b = ab[n * 2 * F + F + f];
  h[i] = a / (1.0f + expf(-a)) * b;
}

__global__ void swiglu_backward_kernel(float* dab, const float* dh, const float* ab, int N, int F) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)N * F) return;
  const long n = i / F, f = i % F;
  const float a = ab[n * 2 * F + f], b = ab[n * 2 * F + F + f], dy = dh[i];
  const float s = 1.0f / (1.0f + expf(-a));
  dab[n * 2 * F + F + f] = dy * a * s;
  dab[n * 2 * F + f] = dy * b * s * (1.0f + a * (1.0f - s));
}

__global__ void sigmoid_kernel(float* out, const float* in, long n) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 1.0f / (1.0f + expf(-in[i]));
}

}  // namespace

void swiglu_forward(float* h, const float* ab, int N, int F) {
  if ((long)N * F <= 0) return;
  swiglu_forward_kernel<<<blocks_for((long)N * F), kThreads>>>(h, ab, N, F);
  DUET_CUDA_LAUNCHED();
}

void swiglu_backward(float* dab, const float* dh, const float* ab, int N, int F) {
  if ((long)N * F <= 0) return;
  swiglu_backward_kernel<<<blocks_for((long)N * F), kThreads>>>(dab, dh, ab, N, F);
  DUET_CUDA_LAUNCHED();
}

void sigmoid_forward(float* out, const float* in, long n) {
  if (n <= 0) return;
  sigmoid_kernel<<<blocks_for(n), kThreads>>>(out, in, n);
  DUET_CUDA_LAUNCHED();
}

}  // namespace duet::cuda
