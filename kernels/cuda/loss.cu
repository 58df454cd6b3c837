// Softmax cross-entropy on the GPU: one block per row; the per-row losses are summed in row
// order by one thread, in double, as on the CPU.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace duet::cuda {

namespace {

__global__ void cross_entropy_rows_kernel(float* logits, double* loss, const int32_t* targets, int V) {
  float* row = logits + (size_t)blockIdx.x * V;
  float m = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, row[v]);
  m = block_max(m);
  float sum = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    row[v] = expf(row[v] - m);
    sum += row[v];
  }
  const float inv = 1.0f / block_sum(sum);
  for (int v = threadIdx.x; v < V; v += blockDim.x) row[v] *= inv;
  __syncthreads();
  if (threadIdx.x == 0) loss[blockIdx.x] = -log((double)fmaxf(row[targets[blockIdx.x]], 1e-30f));
}

__global__ void sum_in_order_kernel(double* total, const double* x, long n) {
  double s = 0.0;
  for (long i = 0; i < n; ++i) s += x[i];
  *total = s;
}

__global__ void cross_entropy_backward_kernel(float* probs, const int32_t* targets, int N, int V, float scale) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long)N * V) return;
  const long n = i / V, v = i % V;
  probs[i] = (v == targets[n] ? probs[i] - 1.0f : probs[i]) * scale;
}

}  // namespace

double cross_entropy_forward(float* logits_to_probs, const int32_t* targets, int N, int V) {
  if (N <= 0) return 0.0;
  double* loss = static_cast<double*>(scratch(sizeof(double) * (N + 1), 2));
  cross_entropy_rows_kernel<<<N, kThreads>>>(logits_to_probs, loss, targets, V);
  DUET_CUDA_LAUNCHED();
  sum_in_order_kernel<<<1, 1>>>(loss + N, loss, N);
  DUET_CUDA_LAUNCHED();
  double total = 0.0;
  CUDA_CHECK(cudaMemcpy(&total, loss + N, sizeof total, cudaMemcpyDeviceToHost));
  return total;
}

void cross_entropy_backward(float* probs_to_dlogits, const int32_t* targets, int N, int V, float scale) {
  const long n = (long)N * V;
  if (n <= 0) return;
  cross_entropy_backward_kernel<<<blocks_for(n), kThreads>>>(probs_to_dlogits, targets, N, V, scale);
  DUET_CUDA_LAUNCHED();
}

}  // namespace duet::cuda
