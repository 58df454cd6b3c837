#pragma once
// What the CUDA kernels share: launch sizes, a block-wide sum, and per-thread device scratch
// that grows once and is then reused (no allocation inside a step once shapes are known).
#include <cuda_runtime.h>

#include <cstddef>

#include "kernels/cuda/check.h"

namespace duet::cuda {

constexpr int kThreads = 256;

inline int blocks_for(long n, int threads = kThreads) { return (int)((n + threads - 1) / threads); }

// The max and the sum of v over a warp, in every lane: a butterfly (max and + are commutative,
// and each level combines the same pair in every lane, so all lanes agree bit for bit).
__device__ __forceinline__ float warp_all_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_all_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum of v over the block (blockDim.x a multiple of 32, at most kThreads); every thread gets
// it. Deterministic: a fixed tree for a given block size.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T warp_sums[kThreads / 32];
  __shared__ T total;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? warp_sums[threadIdx.x] : T(0);
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  const T out = total;
  __syncthreads();  // `total` and `warp_sums` may be reused by the next call
  return out;
}

__device__ inline float block_max(float v) {
  __shared__ float warp_max[kThreads / 32];
  __shared__ float total;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? warp_max[threadIdx.x] : -INFINITY;
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  const float out = total;
  __syncthreads();
  return out;
}

// Device scratch of at least `bytes` for the calling host thread, slot `slot` (0..5; 4 and 5:
// the BF16 copies of a GEMM's inputs).
void* scratch(size_t bytes, int slot = 0);

// Launch errors at once; faults inside a kernel surface at the next synchronisation.
#define DUET_CUDA_LAUNCHED() CUDA_CHECK(cudaGetLastError())

}  // namespace duet::cuda
