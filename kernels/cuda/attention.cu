// Causal attention on the GPU, with the CPU backend's contract: the softmax `probs` (B, H, T,
// T) is written by the forward and read by the backward. One block per query row (forward,
// and the dQ half of the backward), one block per key row (dK, dV), each summing in a fixed
// order: no atomics, the same result every run. The backward keeps dS = P ⊙ (dP − Σ P⊙dP)
// in device scratch (B·H·T·T floats, grown once).
//
// Not yet the flash-style kernel of the GPU issue (tiles in shared memory, only the
// log-sum-exp kept): that changes the backend contract for `probs`, for both backends.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace duet::cuda {

namespace {

// The block's row of one head: blockIdx.x = (b·H + h)·T + row; `base` is q of that head's
// row 0 in qkv (k and v follow at +C and +2C, rows 3C apart).
struct Head {
  __device__ Head(const float* qkv, int T, int H, int D)
      : row(blockIdx.x % T), bh(blockIdx.x / T), h((int)(bh % H)), b(bh / H), C(H * D),
        base(qkv + (size_t)b * T * 3 * C + h * D) {}
  int row;
  long bh;
  int h;
  long b;
  int C;
  const float* base;
};

__global__ void attention_forward_kernel(float* out, float* probs, const float* qkv, int T, int H, int D, float scale) {
  extern __shared__ float q[];  // D
  const Head hd(qkv, T, H, D);
  const int t = hd.row;
  const long bh = hd.bh, b = hd.b;
  const int h = hd.h, C = hd.C;
  const float* base = hd.base;
  for (int d = threadIdx.x; d < D; d += blockDim.x) q[d] = base[(size_t)t * 3 * C + d];
  __syncthreads();
  float* p = probs + ((size_t)bh * T + t) * T;
  float m = -INFINITY;
  for (int s = threadIdx.x; s <= t; s += blockDim.x) {
    const float* k = base + (size_t)s * 3 * C + C;
    float dot = 0.0f;
    for (int d = 0; d < D; ++d) dot += q[d] * k[d];
    p[s] = dot * scale;
    m = fmaxf(m, p[s]);
  }
  m = block_max(m);
  float sum = 0.0f;
  for (int s = threadIdx.x; s <= t; s += blockDim.x) {
    p[s] = expf(p[s] - m);
    sum += p[s];
  }
  const float inv = 1.0f / block_sum(sum);
  for (int s = threadIdx.x; s < T; s += blockDim.x) p[s] = s <= t ? p[s] * inv : 0.0f;
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s <= t; ++s) acc += p[s] * base[(size_t)s * 3 * C + 2 * C + d];
    out[((size_t)b * T + t) * C + h * D + d] = acc;
  }
}

// Query row t: dS row (into ds) and dQ.
__global__ void attention_backward_rows_kernel(float* dqkv, float* ds, const float* dout, const float* qkv,
                                               const float* probs, int T, int H, int D, float scale) {
  extern __shared__ float dO[];  // D
  const Head hd(qkv, T, H, D);
  const int t = hd.row;
  const long bh = hd.bh, b = hd.b;
  const int h = hd.h, C = hd.C;
  const float* base = hd.base;
  for (int d = threadIdx.x; d < D; d += blockDim.x) dO[d] = dout[((size_t)b * T + t) * C + h * D + d];
  __syncthreads();
  const float* p = probs + ((size_t)bh * T + t) * T;
  float* dsr = ds + ((size_t)bh * T + t) * T;
  float dot = 0.0f;
  for (int s = threadIdx.x; s <= t; s += blockDim.x) {
    const float* v = base + (size_t)s * 3 * C + 2 * C;
    float dp = 0.0f;
    for (int d = 0; d < D; ++d) dp += dO[d] * v[d];
    dsr[s] = dp;
    dot += p[s] * dp;
  }
  dot = block_sum(dot);
  for (int s = threadIdx.x; s <= t; s += blockDim.x) dsr[s] = p[s] * (dsr[s] - dot);
  __syncthreads();
  float* dq = dqkv + ((size_t)b * T + t) * 3 * C + h * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s <= t; ++s) acc += dsr[s] * base[(size_t)s * 3 * C + C + d];
    dq[d] = acc * scale;
  }
}

// Key row s: dK and dV, over the query rows t >= s.
__global__ void attention_backward_cols_kernel(float* dqkv, const float* ds, const float* dout, const float* qkv,
                                               const float* probs, int T, int H, int D, float scale) {
  const Head hd(qkv, T, H, D);
  const int s = hd.row;
  const long bh = hd.bh, b = hd.b;
  const int h = hd.h, C = hd.C;
  const float* base = hd.base;
  const float* p = probs + (size_t)bh * T * T;
  const float* dsm = ds + (size_t)bh * T * T;
  float* dk = dqkv + ((size_t)b * T + s) * 3 * C + C + h * D;
  float* dv = dk + C;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float accv = 0.0f, acck = 0.0f;
    for (int t = s; t < T; ++t) {
      accv += p[(size_t)t * T + s] * dout[((size_t)b * T + t) * C + h * D + d];
      acck += dsm[(size_t)t * T + s] * base[(size_t)t * 3 * C + d];
    }
    dv[d] = accv;
    dk[d] = acck * scale;
  }
}

int threads_for(int n) { return n >= kThreads ? kThreads : ((n + 31) / 32) * 32; }

}  // namespace

void attention_forward(float* out, float* probs, const float* qkv, int B, int T, int H, int D) {
  const long rows = (long)B * H * T;
  if (rows <= 0 || D <= 0) return;
  attention_forward_kernel<<<(unsigned)rows, threads_for(T > D ? T : D), D * sizeof(float)>>>(
      out, probs, qkv, T, H, D, 1.0f / sqrtf((float)D));
  DUET_CUDA_LAUNCHED();
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* probs, int B, int T, int H,
                        int D) {
  const long rows = (long)B * H * T;
  if (rows <= 0 || D <= 0) return;
  float* ds = static_cast<float*>(scratch((size_t)rows * T * sizeof(float)));
  const float scale = 1.0f / sqrtf((float)D);
  const int threads = threads_for(T > D ? T : D);
  attention_backward_rows_kernel<<<(unsigned)rows, threads, D * sizeof(float)>>>(dqkv, ds, dout, qkv, probs, T, H, D,
                                                                                 scale);
  DUET_CUDA_LAUNCHED();
  attention_backward_cols_kernel<<<(unsigned)rows, threads_for(D)>>>(dqkv, ds, dout, qkv, probs, T, H, D, scale);
  DUET_CUDA_LAUNCHED();
}

}  // namespace duet::cuda
