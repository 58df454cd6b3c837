// AdamW, the sum of squares and scaling on the GPU. The bias corrections are computed on the
// host exactly as the CPU backend does; the sum of squares runs over a fixed split into
// kParts ranges (a block each, in double) whose partial sums are added in order: the same
// value every run.
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace duet::cuda {

namespace {

constexpr int kParts = 256;

__global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, long n, float lr, float beta1,
                             float beta2, float eps, float wd, float c1, float c2) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = grads[i];
  m[i] = beta1 * m[i] + (1.0f - beta1) * g;
  v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
  const float mhat = m[i] * c1, vhat = v[i] * c2;
  params[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * params[i]);
}

__global__ void sum_squares_parts_kernel(double* parts, const float* g, long n) {
  const long per = (n + kParts - 1) / kParts;
  const long begin = blockIdx.x * per, end = begin + per < n ? begin + per : n;
  double s = 0.0;
  for (long i = begin + threadIdx.x; i < end; i += blockDim.x) s += (double)g[i] * g[i];
  s = block_sum(s);
  if (threadIdx.x == 0) parts[blockIdx.x] = s;
}

__global__ void sum_parts_kernel(double* total, const double* parts) {
  double s = 0.0;
  for (int i = 0; i < kParts; ++i) s += parts[i];
  *total = s;
}

__global__ void scale_kernel(float* x, long n, float s) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}

}  // namespace

void adamw_update(float* params, const float* grads, float* m, float* v, long n, const kernels::AdamWParams& p) {
  if (n <= 0) return;
  const float c1 = 1.0f / (1.0f - std::pow(p.beta1, (float)p.step));
  const float c2 = 1.0f / (1.0f - std::pow(p.beta2, (float)p.step));
  adamw_kernel<<<blocks_for(n), kThreads>>>(params, grads, m, v, n, p.lr, p.beta1, p.beta2, p.eps, p.weight_decay, c1,
                                            c2);
  DUET_CUDA_LAUNCHED();
}

double sum_squares(const float* g, long n) {
  if (n <= 0) return 0.0;
  double* parts = static_cast<double*>(scratch(sizeof(double) * (kParts + 1), 3));
  sum_squares_parts_kernel<<<kParts, kThreads>>>(parts, g, n);
  DUET_CUDA_LAUNCHED();
  sum_parts_kernel<<<1, 1>>>(parts + kParts, parts);
  DUET_CUDA_LAUNCHED();
  double total = 0.0;
  CUDA_CHECK(cudaMemcpy(&total, parts + kParts, sizeof total, cudaMemcpyDeviceToHost));
  return total;
}

void scale(float* x, long n, float s) {
  if (n <= 0) return;
  scale_kernel<<<blocks_for(n), kThreads>>>(x, n, s);
  DUET_CUDA_LAUNCHED();
}

}  // namespace duet::cuda
