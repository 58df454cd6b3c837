// Token embedding on the GPU. The weight gradient adds rows in token order per channel (one
// thread per channel), so repeated tokens add up in the same order every run: no atomics.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace duet::cuda {

namespace {

__global__ void embedding_forward_kernel(float* out, const int32_t* tokens, const float* wte, int N, int C) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)N * C) return;
  const long n = i / C, c = i % C;
  out[i] = wte[(size_t)tokens[n] * C + c];
}

__global__ void embedding_backward_kernel(float* dwte, const float* dout, const int32_t* tokens, int N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int n = 0; n < N; ++n) dwte[(size_t)tokens[n] * C + c] += dout[(size_t)n * C + c];
}

}  // namespace

void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C) {
  if ((long)N * C <= 0) return;
  embedding_forward_kernel<<<blocks_for((long)N * C), kThreads>>>(out, tokens, wte, N, C);
  DUET_CUDA_LAUNCHED();
}

void embedding_backward_weight(float* dwte, const float* dout, const int32_t* tokens, int N, int C) {
  if (N <= 0 || C <= 0) return;
  embedding_backward_kernel<<<blocks_for(C), kThreads>>>(dwte, dout, tokens, N, C);
  DUET_CUDA_LAUNCHED();
}

}  // namespace duet::cuda
