// AdamW, the sum of squares and scaling on the GPU. The bias corrections are computed on the
// host exactly as the CPU backend does; the sum of squares runs over a fixed split into
// kParts ranges (a block each, in double) whose partial sums are added in order: the same
// value every run, and the same for a range alone (sum_squares) as among many (sum_squares_ranges).
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace duet::cuda {

namespace {

constexpr int kParts = 256;

__global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, long n, float lr, float beta1,
                             float beta2, float eps, float wd, float c1, float c2, float gs) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = __fmul_rn(grads[i], gs);  // rounded as the host's scale-then-read (no fused multiply-add)
  m[i] = beta1 * m[i] + (1.0f - beta1) * g;
  v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
  const float mhat = m[i] * c1, vhat = v[i] * c2;
  params[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * params[i]);
}

// Part blockIdx.x of kParts of Σ g² over n values, into parts[blockIdx.x].
__device__ void sum_squares_part(double* parts, const float* g, long n) {
  const long per = (n + kParts - 1) / kParts;
  const long begin = blockIdx.x * per, end = begin + per < n ? begin + per : n;
  double s = 0.0;
  for (long i = begin + threadIdx.x; i < end; i += blockDim.x) s += (double)g[i] * g[i];
  s = block_sum(s);
  if (threadIdx.x == 0) parts[blockIdx.x] = s;
}

__device__ double sum_parts(const double* parts) {
  double s = 0.0;
  for (int i = 0; i < kParts; ++i) s += parts[i];
  return s;
}

__global__ void sum_squares_parts_kernel(double* parts, const float* g, long n) { sum_squares_part(parts, g, n); }

__global__ void sum_parts_kernel(double* total, const double* parts) { *total = sum_parts(parts); }

// Up to kRangesPerLaunch ranges travel as a kernel argument (no copy to the device first).
constexpr int kRangesPerLaunch = 64;
struct RangeChunk {
  long long begin[kRangesPerLaunch], end[kRangesPerLaunch];
};

// blockIdx.y: the range; its kParts parts at parts + y·kParts, as sum_squares_parts_kernel's.
__global__ void sum_squares_chunk_parts_kernel(double* parts, const float* g, RangeChunk c) {
  const int r = blockIdx.y;
  sum_squares_part(parts + (long)r * kParts, g + c.begin[r], (long)(c.end[r] - c.begin[r]));
}

__global__ void sum_parts_each_kernel(double* totals, const double* parts, int count) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < count) totals[r] = sum_parts(parts + (long)r * kParts);
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
                                            c2, p.grad_scale);
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

void sum_squares_ranges(const float* g, const int64_t* ranges, int count, double* sums) {
  if (count <= 0) return;
  double* parts = static_cast<double*>(scratch(sizeof(double) * (size_t)count * (kParts + 1), 3));
  double* totals = parts + (size_t)count * kParts;
  for (int c0 = 0; c0 < count; c0 += kRangesPerLaunch) {
    const int m = count - c0 < kRangesPerLaunch ? count - c0 : kRangesPerLaunch;
    RangeChunk chunk{};
    for (int i = 0; i < m; ++i) chunk.begin[i] = ranges[2 * (c0 + i)], chunk.end[i] = ranges[2 * (c0 + i) + 1];
    sum_squares_chunk_parts_kernel<<<dim3(kParts, m), kThreads>>>(parts + (size_t)c0 * kParts, g, chunk);
    DUET_CUDA_LAUNCHED();
  }
  sum_parts_each_kernel<<<blocks_for(count, 128), 128>>>(totals, parts, count);
  DUET_CUDA_LAUNCHED();
  CUDA_CHECK(cudaMemcpy(sums, totals, sizeof(double) * count, cudaMemcpyDeviceToHost));
}

void scale(float* x, long n, float s) {
  if (n <= 0) return;
  scale_kernel<<<blocks_for(n), kThreads>>>(x, n, s);
  DUET_CUDA_LAUNCHED();
}

}  // namespace duet::cuda
