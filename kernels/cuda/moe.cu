// Mixture-of-experts routing and token movement on the GPU. Routing is one thread per token
// running the CPU's own per-token code (kernels/moe_token.h), the permutation plan a single
// thread (a stable counting sort over N·K assignments: exact, and small next to the expert
// GEMMs), and every sum runs over k or c in a fixed order: no atomics.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/moe_token.h"

namespace duet::cuda {

namespace {

__global__ void moe_route_kernel(int32_t* expert, float* gate, const float* scores, const float* bias, int N, int E,
                                 int K) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n < N) kernels::route_token(expert + (size_t)n * K, gate + (size_t)n * K, scores + (size_t)n * E, bias, E, K);
}

__global__ void moe_route_backward_kernel(float* dlogits, const float* dgate, const float* scores,
                                          const int32_t* expert, const float* gate, int N, int E, int K) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n < N)
    kernels::route_token_backward(dlogits + (size_t)n * E, dgate + (size_t)n * K, scores + (size_t)n * E,
                                  expert + (size_t)n * K, gate + (size_t)n * K, E, K);
}

__global__ void moe_permute_plan_kernel(int32_t* row_of, int32_t* offsets, int32_t* cursor, const int32_t* expert,
                                        long NK, int E) {
  for (int e = 0; e <= E; ++e) offsets[e] = 0;
  for (long i = 0; i < NK; ++i) offsets[expert[i] + 1]++;
  for (int e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  for (int e = 0; e < E; ++e) cursor[e] = offsets[e];
  for (long i = 0; i < NK; ++i) row_of[i] = cursor[expert[i]]++;
}

__global__ void moe_gather_kernel(float* xp, const float* x, const int32_t* row_of, int N, int K, int C) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)N * K * C) return;
  const long nk = i / C, c = i % C, n = nk / K;
  xp[(size_t)row_of[nk] * C + c] = x[n * C + c];
}

__global__ void moe_gather_backward_kernel(float* dx, const float* dxp, const int32_t* row_of, int N, int K, int C) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)N * C) return;
  const long n = i / C, c = i % C;
  float acc = dx[i];
  for (int k = 0; k < K; ++k) acc += dxp[(size_t)row_of[n * K + k] * C + c];
  dx[i] = acc;
}

__global__ void moe_combine_kernel(float* out, const float* yp, const float* gate, const int32_t* row_of, int N, int K,
                                   int C) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)N * C) return;
  const long n = i / C, c = i % C;
  float acc = out[i];
  for (int k = 0; k < K; ++k) acc += gate[n * K + k] * yp[(size_t)row_of[n * K + k] * C + c];
  out[i] = acc;
}

// One block per assignment (n, k).
__global__ void moe_combine_backward_kernel(float* dyp, float* dgate, const float* dout, const float* yp,
                                            const float* gate, const int32_t* row_of, int K, int C) {
  const long nk = blockIdx.x;
  const long n = nk / K;
  const size_t row = row_of[nk];
  const float g = gate[nk];
  const float* d = dout + n * C;
  const float* y = yp + row * C;
  float* dy = dyp + row * C;
  float dot = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    dy[c] = g * d[c];
    dot += d[c] * y[c];
  }
  dot = block_sum(dot);
  if (threadIdx.x == 0) dgate[nk] = dot;
}

}  // namespace

void moe_route(int32_t* expert, float* gate, const float* scores, const float* bias, int N, int E, int K) {
  if (N <= 0) return;
  moe_route_kernel<<<blocks_for(N, 128), 128>>>(expert, gate, scores, bias, N, E, K);
  DUET_CUDA_LAUNCHED();
}

void moe_route_backward(float* dlogits, const float* dgate, const float* scores, const int32_t* expert,
                        const float* gate, int N, int E, int K) {
  if (N <= 0) return;
  moe_route_backward_kernel<<<blocks_for(N, 128), 128>>>(dlogits, dgate, scores, expert, gate, N, E, K);
  DUET_CUDA_LAUNCHED();
}

void moe_permute_plan(int32_t* row_of, int32_t* offsets, const int32_t* expert, int N, int E, int K) {
  int32_t* cursor = static_cast<int32_t*>(scratch(sizeof(int32_t) * (E > 0 ? E : 1), 1));
  moe_permute_plan_kernel<<<1, 1>>>(row_of, offsets, cursor, expert, (long)N * K, E);
  DUET_CUDA_LAUNCHED();
}

void moe_gather(float* xp, const float* x, const int32_t* row_of, int N, int K, int C) {
  const long n = (long)N * K * C;
  if (n <= 0) return;
  moe_gather_kernel<<<blocks_for(n), kThreads>>>(xp, x, row_of, N, K, C);
  DUET_CUDA_LAUNCHED();
}

void moe_gather_backward(float* dx, const float* dxp, const int32_t* row_of, int N, int K, int C) {
  const long n = (long)N * C;
  if (n <= 0) return;
  moe_gather_backward_kernel<<<blocks_for(n), kThreads>>>(dx, dxp, row_of, N, K, C);
  DUET_CUDA_LAUNCHED();
}

void moe_combine(float* out, const float* yp, const float* gate, const int32_t* row_of, int N, int K, int C) {
  const long n = (long)N * C;
  if (n <= 0) return;
  moe_combine_kernel<<<blocks_for(n), kThreads>>>(out, yp, gate, row_of, N, K, C);
  DUET_CUDA_LAUNCHED();
}

void moe_combine_backward(float* dyp, float* dgate, const float* dout, const float* yp, const float* gate,
                          const int32_t* row_of, int N, int K, int C) {
  const long nk = (long)N * K;
  if (nk <= 0) return;
  if (C <= 0) {  // no channels: every gate gradient is an empty sum
    CUDA_CHECK(cudaMemsetAsync(dgate, 0, sizeof(float) * nk));
    return;
  }
  moe_combine_backward_kernel<<<(unsigned)nk, C >= kThreads ? kThreads : ((C + 31) / 32) * 32>>>(dyp, dgate, dout, yp,
                                                                                                 gate, row_of, K, C);
  DUET_CUDA_LAUNCHED();
}

}  // namespace duet::cuda
