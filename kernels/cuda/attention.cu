// Causal attention on the GPU, flash-style (after FlashAttention-2): no T×T matrix in device
// memory. The forward walks the key/value tiles of each 32-row query tile with an online
// softmax and keeps only the rows' log-sum-exp (`saved`, B·H·T floats, kernels/attention.h);
// the backward recomputes each tile's probabilities from it.
//
// FP32 on CUDA cores, the reference path (BF16's tensor-core version: attention_bf16.cu). Deterministic: every
// sum has a fixed order and no kernel uses atomics — the backward runs one kernel per query
// tile for dQ and one per key tile for dK and dV, each recomputing the scores it needs
// (FlashAttention-2's single backward kernel adds dQ with atomics, whose order varies).
//
// Layout of a block: 128 threads, 4 warps of 8 rows each (R). For scores the lanes are the
// 32 columns of the other tile and each warp keeps its 8 rows' dot products in registers; for
// the products with V, K, Q or dO the lanes are the head's columns (D padded to Dp = 32, 64 or
// 128: Dp / 32 per lane) and a row's probabilities are broadcast with a shuffle. Tiles sit in
// shared memory with a row stride of Dp + 1, so that 32 lanes reading 32 different rows hit 32
// different banks.
#include <cstdio>
#include <stdexcept>
#include <string>

#include "kernels/backend.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace duet::cuda {

namespace {

constexpr int kTile = 32;                 // rows of a query or key tile: one per lane
constexpr int kWarps = 4;                 // per block
constexpr int kRows = kTile / kWarps;     // rows per warp (R)
constexpr int kBlock = kWarps * 32;       // threads per block
constexpr unsigned kFull = 0xffffffffu;

// Rows [row0, row0 + kTile) of a head's D columns (row stride ld) into a tile of stride
// Dp + 1; rows past T and columns past D are zero.
template <int Dp>
__device__ void load_tile(float* tile, const float* src, int row0, int T, int D, long ld) {
  for (int idx = threadIdx.x; idx < kTile * Dp; idx += blockDim.x) {
    const int r = idx / Dp, d = idx % Dp, t = row0 + r;
    tile[r * (Dp + 1) + d] = (t < T && d < D) ? src[(size_t)t * ld + d] : 0.0f;
  }
}

// acc[r][c] += Σ_j w_r(j) · tile[j][lane + 32c]: row r's weights w_r(j) are lane j's w[r]
// (broadcast by shuffle), the tile's columns are the lanes'. P·V, dS·K, Pᵀ·dO, dSᵀ·Q.
template <int Dp>
__device__ __forceinline__ void mix_rows(float (&acc)[kRows][Dp / 32], const float (&w)[kRows], const float* tile,
                                         int lane) {
  constexpr int Ld = Dp + 1, Cn = Dp / 32;
  for (int jj = 0; jj < kTile; ++jj) {
    float t[Cn];
#pragma unroll
    for (int c = 0; c < Cn; ++c) t[c] = tile[jj * Ld + lane + 32 * c];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float x = __shfl_sync(kFull, w[r], jj);
#pragma unroll
      for (int c = 0; c < Cn; ++c) acc[r][c] += x * t[c];
    }
  }
}

template <int Dp>
__global__ void __launch_bounds__(kBlock)
    flash_forward_kernel(float* out, float* lse, const float* qkv, int T, int H, int D, float scale) {
  constexpr int Ld = Dp + 1, Cn = Dp / 32;
  extern __shared__ float smem[];
  float* sq = smem;
  float* sk = sq + kTile * Ld;
  float* sv = sk + kTile * Ld;
  const long bh = blockIdx.y, b = bh / H;
  const int h = (int)(bh % H), C = H * D, q0 = blockIdx.x * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * kRows;
  const float* head = qkv + (size_t)b * T * 3 * C + (size_t)h * D;
  load_tile<Dp>(sq, head, q0, T, D, 3L * C);

  float m[kRows], l[kRows], acc[kRows][Cn];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < Cn; ++c) acc[r][c] = 0.0f;
  }
  const int last = min(q0 + kTile, T) - 1;  // the block's last query row: keys up to it
  for (int k0 = 0; k0 <= last; k0 += kTile) {
    __syncthreads();  // the previous tile is no longer read
    load_tile<Dp>(sk, head + C, k0, T, D, 3L * C);
    load_tile<Dp>(sv, head + 2 * C, k0, T, D, 3L * C);
    __syncthreads();
    float s[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) s[r] = 0.0f;
    for (int d = 0; d < Dp; ++d) {
      const float k = sk[lane * Ld + d];
#pragma unroll
      for (int r = 0; r < kRows; ++r) s[r] += sq[(r0 + r) * Ld + d] * k;
    }
    const int j = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int i = q0 + r0 + r;
      const bool ok = j <= i && j < T;
      const float x = ok ? s[r] * scale : -INFINITY;
      // Finite: key k0 <= q0 <= i is in every tile this row reaches.
      const float mn = fmaxf(m[r], warp_all_max(x));
      const float p = ok ? expf(x - mn) : 0.0f;
      const float alpha = expf(m[r] - mn);  // 0 on the first tile (m = -inf)
      l[r] = l[r] * alpha + warp_all_sum(p);
      m[r] = mn;
#pragma unroll
      for (int c = 0; c < Cn; ++c) acc[r][c] *= alpha;
      s[r] = p;
    }
    mix_rows<Dp>(acc, s, sv, lane);  // P·V
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = q0 + r0 + r;
    if (i >= T) continue;
    const float inv = 1.0f / l[r];
    float* o = out + ((size_t)b * T + i) * C + (size_t)h * D;
#pragma unroll
    for (int c = 0; c < Cn; ++c)
      if (lane + 32 * c < D) o[lane + 32 * c] = acc[r][c] * inv;
    if (lane == 0) lse[bh * T + i] = m[r] + logf(l[r]);
  }
}

// delta[bh·T + t] = Σ_d dO·O of that row (= Σ_s P·dP): one warp per row.
__global__ void flash_delta_kernel(float* delta, const float* dout, const float* out, long rows, int T, int H,
                                   int D) {
  const long row = (long)blockIdx.x * kWarps + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32, t = (int)(row % T), C = H * D;
  const long bh = row / T, b = bh / H;
  const int h = (int)(bh % H);
  const size_t at = ((size_t)b * T + t) * C + (size_t)h * D;
  float s = 0.0f;
  for (int d = lane; d < D; d += 32) s += dout[at + d] * out[at + d];
  s = warp_all_sum(s);
  if (lane == 0) delta[row] = s;
}

// dQ of one 32-row query tile, over the key tiles up to its last row.
template <int Dp>
__global__ void __launch_bounds__(kBlock)
    flash_backward_dq_kernel(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* delta,
                             int T, int H, int D, float scale) {
  constexpr int Ld = Dp + 1, Cn = Dp / 32;
  extern __shared__ float smem[];
  float* sq = smem;
  float* sdo = sq + kTile * Ld;
  float* sk = sdo + kTile * Ld;
  float* sv = sk + kTile * Ld;
  const long bh = blockIdx.y, b = bh / H;
  const int h = (int)(bh % H), C = H * D, q0 = blockIdx.x * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * kRows;
  const float* head = qkv + (size_t)b * T * 3 * C + (size_t)h * D;
  load_tile<Dp>(sq, head, q0, T, D, 3L * C);
  load_tile<Dp>(sdo, dout + (size_t)b * T * C + (size_t)h * D, q0, T, D, C);
  float row_lse[kRows], row_delta[kRows], acc[kRows][Cn];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = q0 + r0 + r;
    row_lse[r] = i < T ? lse[bh * T + i] : 0.0f;
    row_delta[r] = i < T ? delta[bh * T + i] : 0.0f;
#pragma unroll
    for (int c = 0; c < Cn; ++c) acc[r][c] = 0.0f;
  }
  const int last = min(q0 + kTile, T) - 1;
  for (int k0 = 0; k0 <= last; k0 += kTile) {
    __syncthreads();
    load_tile<Dp>(sk, head + C, k0, T, D, 3L * C);
    load_tile<Dp>(sv, head + 2 * C, k0, T, D, 3L * C);
    __syncthreads();
    float s[kRows], dp[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) s[r] = 0.0f, dp[r] = 0.0f;
    for (int d = 0; d < Dp; ++d) {
      const float k = sk[lane * Ld + d], v = sv[lane * Ld + d];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        s[r] += sq[(r0 + r) * Ld + d] * k;
        dp[r] += sdo[(r0 + r) * Ld + d] * v;
      }
    }
    const int j = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int i = q0 + r0 + r;
      const float p = (j <= i && i < T) ? expf(s[r] * scale - row_lse[r]) : 0.0f;
      s[r] = p * (dp[r] - row_delta[r]);  // dS
    }
    mix_rows<Dp>(acc, s, sk, lane);  // dS·K
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = q0 + r0 + r;
    if (i >= T) continue;
    float* dq = dqkv + ((size_t)b * T + i) * 3 * C + (size_t)h * D;
#pragma unroll
    for (int c = 0; c < Cn; ++c)
      if (lane + 32 * c < D) dq[lane + 32 * c] = acc[r][c] * scale;
  }
}

// dK and dV of one 32-row key tile, over the query tiles from its first row on.
template <int Dp>
__global__ void __launch_bounds__(kBlock)
    flash_backward_dkv_kernel(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* delta,
                              int T, int H, int D, float scale) {
  constexpr int Ld = Dp + 1, Cn = Dp / 32;
  extern __shared__ float smem[];
  float* sk = smem;
  float* sv = sk + kTile * Ld;
  float* sq = sv + kTile * Ld;
  float* sdo = sq + kTile * Ld;
  float* slse = sdo + kTile * Ld;
  float* sdelta = slse + kTile;
  const long bh = blockIdx.y, b = bh / H;
  const int h = (int)(bh % H), C = H * D, k0 = blockIdx.x * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = warp * kRows;
  const float* head = qkv + (size_t)b * T * 3 * C + (size_t)h * D;
  const float* dhead = dout + (size_t)b * T * C + (size_t)h * D;
  load_tile<Dp>(sk, head + C, k0, T, D, 3L * C);
  load_tile<Dp>(sv, head + 2 * C, k0, T, D, 3L * C);
  float dk[kRows][Cn], dv[kRows][Cn];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int c = 0; c < Cn; ++c) dk[r][c] = 0.0f, dv[r][c] = 0.0f;
  for (int q0 = k0; q0 < T; q0 += kTile) {
    __syncthreads();
    load_tile<Dp>(sq, head, q0, T, D, 3L * C);
    load_tile<Dp>(sdo, dhead, q0, T, D, C);
    if (threadIdx.x < kTile) {
      const int i = q0 + threadIdx.x;
      slse[threadIdx.x] = i < T ? lse[bh * T + i] : 0.0f;
      sdelta[threadIdx.x] = i < T ? delta[bh * T + i] : 0.0f;
    }
    __syncthreads();
    float s[kRows], dp[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) s[r] = 0.0f, dp[r] = 0.0f;
    for (int d = 0; d < Dp; ++d) {
      const float q = sq[lane * Ld + d], g = sdo[lane * Ld + d];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        s[r] += q * sk[(r0 + r) * Ld + d];
        dp[r] += g * sv[(r0 + r) * Ld + d];
      }
    }
    const int i = q0 + lane;  // this lane's query row
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int j = k0 + r0 + r;  // the key row
      const float p = (j <= i && i < T) ? expf(s[r] * scale - slse[lane]) : 0.0f;
      s[r] = p;
      dp[r] = p * (dp[r] - sdelta[lane]);  // dS
    }
    mix_rows<Dp>(dv, s, sdo, lane);  // Pᵀ·dO
    mix_rows<Dp>(dk, dp, sq, lane);  // dSᵀ·Q
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int j = k0 + r0 + r;
    if (j >= T) continue;
    float* dkr = dqkv + ((size_t)b * T + j) * 3 * C + C + (size_t)h * D;
#pragma unroll
    for (int c = 0; c < Cn; ++c)
      if (lane + 32 * c < D) dkr[lane + 32 * c] = dk[r][c] * scale, dkr[C + lane + 32 * c] = dv[r][c];
  }
}

// Shared memory of each kernel, in floats.
constexpr size_t forward_smem(int Dp) { return sizeof(float) * 3 * kTile * (Dp + 1); }
constexpr size_t dq_smem(int Dp) { return sizeof(float) * 4 * kTile * (Dp + 1); }
constexpr size_t dkv_smem(int Dp) { return sizeof(float) * (4 * kTile * (Dp + 1) + 2 * kTile); }

// Blocks: (query or key tiles, B·H); the grid's y extent is at most 65535.
dim3 attention_grid(int B, int T, int H) {
  const long heads = (long)B * H;
  if (heads > 65535)
    throw std::invalid_argument("CUDA attention: batch × heads = " + std::to_string(heads) +
                                " is over the 65535 blocks a grid's y extent takes");
  return dim3((unsigned)((T + kTile - 1) / kTile), (unsigned)heads);
}

// Above 48 KiB a kernel must opt in to more dynamic shared memory (once per kernel).
template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int Dp>
void forward(float* out, float* lse, const float* qkv, int B, int T, int H, int D) {
  static const bool ready = (allow_smem(flash_forward_kernel<Dp>, forward_smem(Dp)), true);
  (void)ready;
  const dim3 grid = attention_grid(B, T, H);
  flash_forward_kernel<Dp><<<grid, kBlock, forward_smem(Dp)>>>(out, lse, qkv, T, H, D, 1.0f / sqrtf((float)D));
  DUET_CUDA_LAUNCHED();
}

template <int Dp>
void backward(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* delta, int B, int T,
              int H, int D) {
  static const bool ready =
      (allow_smem(flash_backward_dq_kernel<Dp>, dq_smem(Dp)), allow_smem(flash_backward_dkv_kernel<Dp>, dkv_smem(Dp)),
       true);
  (void)ready;
  const dim3 grid = attention_grid(B, T, H);
  const float scale = 1.0f / sqrtf((float)D);
  flash_backward_dq_kernel<Dp><<<grid, kBlock, dq_smem(Dp)>>>(dqkv, dout, qkv, lse, delta, T, H, D, scale);
  DUET_CUDA_LAUNCHED();
  flash_backward_dkv_kernel<Dp><<<grid, kBlock, dkv_smem(Dp)>>>(dqkv, dout, qkv, lse, delta, T, H, D, scale);
  DUET_CUDA_LAUNCHED();
}

// The padded head width the kernels are instantiated for.
int padded_head(int D) {
  if (D <= 32) return 32;
  if (D <= 64) return 64;
  if (D <= 128) return 128;
  throw std::invalid_argument("CUDA attention takes heads of at most " + std::to_string(kernels::kCudaMaxHeadDim) +
                              " dimensions; got " + std::to_string(D) + " (model.d_model / model.heads)");
}

}  // namespace

void attention_forward(float* out, float* lse, const float* qkv, int B, int T, int H, int D) {
  if ((long)B * H * T <= 0 || D <= 0) return;
  switch (padded_head(D)) {
    case 32: return forward<32>(out, lse, qkv, B, T, H, D);
    case 64: return forward<64>(out, lse, qkv, B, T, H, D);
    default: return forward<128>(out, lse, qkv, B, T, H, D);
  }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse, int B,
                        int T, int H, int D) {
  const long rows = (long)B * H * T;
  if (rows <= 0 || D <= 0) return;
  const int Dp = padded_head(D);
  float* delta = static_cast<float*>(scratch((size_t)rows * sizeof(float)));
  flash_delta_kernel<<<(unsigned)((rows + kWarps - 1) / kWarps), kBlock>>>(delta, dout, out, rows, T, H, D);
  DUET_CUDA_LAUNCHED();
  switch (Dp) {
    case 32: return backward<32>(dqkv, dout, qkv, lse, delta, B, T, H, D);
    case 64: return backward<64>(dqkv, dout, qkv, lse, delta, B, T, H, D);
    default: return backward<128>(dqkv, dout, qkv, lse, delta, B, T, H, D);
  }
}

size_t attention_saved_floats(int B, int T, int H, int /*D*/) { return (size_t)B * H * T; }

}  // namespace duet::cuda
