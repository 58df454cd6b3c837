// Causal attention on tensor cores (model.precision: bf16): every product — Q·Kᵀ, P·V and the
// backward's dO·Vᵀ, dS·K, dSᵀ·Q, Pᵀ·dO — is a strided-batched BF16 cuBLAS GEMM over the heads
// with FP32 accumulation; the softmax and its backward are FP32 kernels between them.
//
// Memory: as the flash kernels of attention.cu, `saved` is only the rows' log-sum-exp
// (B·H·T floats, so the two tables are interchangeable) and the backward recomputes the
// probabilities. The scores of one block of query rows (at most kBlockRows of them, all
// heads, against the keys up to the block's last row) do sit in device scratch for a moment:
// 4 + 4 + 2 + 2 bytes per score, at most ~100 MB at a 2048-token sequence with 16 heads,
// reused block after block. Not a single fused kernel: the scores make a round trip through
// HBM (about 12 bytes per causal score), which costs an H200 far less than FP32 CUDA cores
// cost the products (docs/gpu.md). Causal blocks skip the keys after their last row, so the
// products do ~T²/2 + T·kBlockRows/2 multiply-adds per head rather than T².
//
// Deterministic: the GEMMs' sums have cuBLAS's fixed order for a given GPU, the row kernels
// reduce in a fixed butterfly, and dK, dV add the query blocks in order (beta = 1).
#include <algorithm>
#include <cmath>

#include "kernels/cuda/blas.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace duet::cuda {

namespace {

constexpr int kBlockRows = 256;  // query rows per block of scores
constexpr int kRowWarps = 4;  // rows (one per warp) per block of the row kernels

// Row i of head h in a block of scores S (heads × rows × kend, row-major with row stride ld ≥
// kend, a multiple of 8 so that every row starts 16-byte aligned for the tensor-core GEMMs):
// query q0 + i sees keys 0..q0 + i. lse[(b·H + h)·T + q0 + i] = log Σ exp(s), P = exp(s − lse) on the seen keys
// and 0 after them (so that P·V can run over all kend keys).
__global__ void softmax_rows_kernel(__nv_bfloat16* P, float* lse, const float* S, int rows, int kend, int ld, int q0,
                                    int b, int H, int T) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const long r = (long)blockIdx.x * kRowWarps + warp;  // over heads × rows
  if (r >= (long)H * rows) return;
  const int h = (int)(r / rows), i = (int)(r % rows), seen = q0 + i + 1;
  const float* s = S + (size_t)r * ld;
  float m = -INFINITY;
  for (int j = lane; j < seen; j += 32) m = fmaxf(m, s[j]);
  m = warp_all_max(m);
  float sum = 0.0f;
  for (int j = lane; j < seen; j += 32) sum += expf(s[j] - m);
  sum = warp_all_sum(sum);
  const float l = m + logf(sum);
  if (lane == 0) lse[((size_t)b * H + h) * T + q0 + i] = l;
  __nv_bfloat16* p = P + (size_t)r * ld;
  for (int j = lane; j < kend; j += 32) p[j] = __float2bfloat16_rn(j < seen ? expf(s[j] - l) : 0.0f);
}

// The backward's row kernel: P = exp(S − lse) (0 after the seen keys) and
// dS = scale · P ∘ (dP − delta), both rounded to BF16 for the GEMMs that follow.
__global__ void softmax_backward_rows_kernel(__nv_bfloat16* P, __nv_bfloat16* dS, const float* S, const float* dP,
                                             const float* lse, const float* delta, int rows, int kend, int ld,
                                             int q0, int b, int H, int T, float scale) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const long r = (long)blockIdx.x * kRowWarps + warp;
  if (r >= (long)H * rows) return;
  const int h = (int)(r / rows), i = (int)(r % rows), seen = q0 + i + 1;
  const size_t row = ((size_t)b * H + h) * T + q0 + i;
  const float l = lse[row], d = delta[row];
  const float* s = S + (size_t)r * ld;
  const float* dp = dP + (size_t)r * ld;
  __nv_bfloat16* p = P + (size_t)r * ld;
  __nv_bfloat16* ds = dS + (size_t)r * ld;
  for (int j = lane; j < kend; j += 32) {
    const float pj = j < seen ? expf(s[j] - l) : 0.0f;
    p[j] = __float2bfloat16_rn(pj);
    ds[j] = __float2bfloat16_rn(scale * pj * (dp[j] - d));
  }
}

// delta[(b·H + h)·T + t] = Σ_d dO·O over head h's columns of token t: one warp per row.
__global__ void delta_rows_kernel(float* delta, const float* dout, const float* out, long rows, int T, int H, int D) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const long r = (long)blockIdx.x * kRowWarps + warp;  // over B·H·T, in (b, h, t) order
  if (r >= rows) return;
  const long bh = r / T;
  const int t = (int)(r % T), h = (int)(bh % H);
  const long b = bh / H, C = (long)H * D;
  const size_t at = ((size_t)b * T + t) * C + (size_t)h * D;
  float acc = 0.0f;
  for (int d = lane; d < D; d += 32) acc += dout[at + d] * out[at + d];
  acc = warp_all_sum(acc);
  if (lane == 0) delta[r] = acc;
}

unsigned row_blocks(long rows) { return (unsigned)((rows + kRowWarps - 1) / kRowWarps); }

// Row-major C = alpha·op(A)·op(B) + beta·C for `batch` matrices at strides sA, sB, sC
// (elements): A and B BF16, C FP32, FP32 accumulation. cuBLAS is column-major, so it computes
// Cᵀ = op(B)ᵀ·op(A)ᵀ, the same memory (as gemm.cu).
void gemm_batched(bool ta, bool tb, int M, int N, int K, float alpha, const __nv_bfloat16* A, int lda, long sA,
                  const __nv_bfloat16* B, int ldb, long sB, float beta, float* C, int ldc, long sC, int batch) {
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(bf16_blas_handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                          ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, CUDA_R_16BF, ldb, sB, A,
                                          CUDA_R_16BF, lda, sA, &beta, C, CUDA_R_32F, ldc, sC, batch,
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// Query rows per block: kBlockRows, fewer when one block's scores (heads × rows × T) would
// pass 8 Mi (at most 32 MiB per FP32 buffer), never under 16.
int block_rows(int T, int H) {
  const long cap = (8L << 20) / ((long)H * T);
  const long rows = std::max(16L, std::min<long>(kBlockRows, cap / 16 * 16));
  return (int)std::min<long>(rows, T);
}

// Device scratch carved into aligned pieces (one slot: the calls below are in stream order).
struct Carve {
  char* p;
  template <class T>
  T* take(size_t n) {
    T* out = reinterpret_cast<T*>(p);
    p += (n * sizeof(T) + 255) / 256 * 256;
    return out;
  }
};
size_t carved(size_t bytes) { return (bytes + 255) / 256 * 256; }

int padded(int n) { return (n + 7) / 8 * 8; }  // a score row's stride

}  // namespace

void attention_forward_bf16(float* out, float* lse, const float* qkv, int B, int T, int H, int D) {
  if ((long)B * H * T <= 0 || D <= 0) return;
  const int C = H * D, Bq = block_rows(T, H);
  const size_t n_qkv = (size_t)B * T * 3 * C, n_scores = (size_t)H * Bq * padded(T);
  Carve c{static_cast<char*>(scratch(carved(n_qkv * 2) + carved(n_scores * 4) + carved(n_scores * 2)))};
  auto* qkv16 = c.take<__nv_bfloat16>(n_qkv);
  auto* S = c.take<float>(n_scores);
  auto* P = c.take<__nv_bfloat16>(n_scores);
  cast_to_bf16(qkv16, qkv, (long)n_qkv);
  const float scale = 1.0f / std::sqrt((float)D);
  for (int b = 0; b < B; ++b) {
    const __nv_bfloat16* seq = qkv16 + (size_t)b * T * 3 * C;
    for (int q0 = 0; q0 < T; q0 += Bq) {
      const int rows = std::min(Bq, T - q0), kend = q0 + rows, ld = padded(kend);
      // S[h] (rows × kend) = scale · Q[h] (rows × D) · K[h]ᵀ (D × kend); heads D columns apart.
      gemm_batched(false, true, rows, kend, D, scale, seq + (size_t)q0 * 3 * C, 3 * C, D, seq + C, 3 * C, D, 0.0f, S,
                   ld, (long)rows * ld, H);
      softmax_rows_kernel<<<row_blocks((long)H * rows), kRowWarps * 32>>>(P, lse, S, rows, kend, ld, q0, b, H, T);
      DUET_CUDA_LAUNCHED();
      // O[h] (rows × D) = P[h] (rows × kend) · V[h] (kend × D)
      gemm_batched(false, false, rows, D, kend, 1.0f, P, ld, (long)rows * ld, seq + 2 * C, 3 * C, D, 0.0f,
                   out + ((size_t)b * T + q0) * C, C, D, H);
    }
  }
}

void attention_backward_bf16(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                             int B, int T, int H, int D) {
  const long nrows = (long)B * H * T;
  if (nrows <= 0 || D <= 0) return;
  const int C = H * D, Bq = block_rows(T, H);
  const size_t n_qkv = (size_t)B * T * 3 * C, n_out = (size_t)B * T * C, n_scores = (size_t)H * Bq * padded(T);
  Carve c{static_cast<char*>(scratch(carved(n_qkv * 2) + carved(n_out * 2) + carved(nrows * 4) +
                                     2 * carved(n_scores * 4) + 2 * carved(n_scores * 2)))};
  auto* qkv16 = c.take<__nv_bfloat16>(n_qkv);
  auto* dout16 = c.take<__nv_bfloat16>(n_out);
  auto* delta = c.take<float>(nrows);
  auto* S = c.take<float>(n_scores);
  auto* dP = c.take<float>(n_scores);
  auto* P = c.take<__nv_bfloat16>(n_scores);
  auto* dS = c.take<__nv_bfloat16>(n_scores);
  cast_to_bf16(qkv16, qkv, (long)n_qkv);
  cast_to_bf16(dout16, dout, (long)n_out);
  delta_rows_kernel<<<row_blocks(nrows), kRowWarps * 32>>>(delta, dout, out, nrows, T, H, D);
  DUET_CUDA_LAUNCHED();
  // dK and dV gather every query block's share (beta = 1): they start at zero.
  CUDA_CHECK(cudaMemset2DAsync(dqkv + C, sizeof(float) * 3 * C, 0, sizeof(float) * 2 * C, (size_t)B * T,
                               cudaStreamPerThread));
  const float scale = 1.0f / std::sqrt((float)D);
  for (int b = 0; b < B; ++b) {
    const __nv_bfloat16* seq = qkv16 + (size_t)b * T * 3 * C;
    const __nv_bfloat16* dseq = dout16 + (size_t)b * T * C;
    float* dq = dqkv + (size_t)b * T * 3 * C;
    for (int q0 = 0; q0 < T; q0 += Bq) {
      const int rows = std::min(Bq, T - q0), kend = q0 + rows, ld = padded(kend);
      const long sS = (long)rows * ld;
      const __nv_bfloat16* Q = seq + (size_t)q0 * 3 * C;
      const __nv_bfloat16* dO = dseq + (size_t)q0 * C;
      gemm_batched(false, true, rows, kend, D, scale, Q, 3 * C, D, seq + C, 3 * C, D, 0.0f, S, ld, sS, H);
      // dP[h] = dO[h] (rows × D) · V[h]ᵀ (D × kend)
      gemm_batched(false, true, rows, kend, D, 1.0f, dO, C, D, seq + 2 * C, 3 * C, D, 0.0f, dP, ld, sS, H);
      softmax_backward_rows_kernel<<<row_blocks((long)H * rows), kRowWarps * 32>>>(P, dS, S, dP, lse, delta, rows,
                                                                                   kend, ld, q0, b, H, T, scale);
      DUET_CUDA_LAUNCHED();
      // dQ[h] (rows × D) = dS[h] · K[h] (kend × D): this block's rows, whole.
      gemm_batched(false, false, rows, D, kend, 1.0f, dS, ld, sS, seq + C, 3 * C, D, 0.0f, dq + (size_t)q0 * 3 * C,
                   3 * C, D, H);
      // dK[h] (kend × D) += dS[h]ᵀ · Q[h] (rows × D); dV[h] += P[h]ᵀ · dO[h].
      gemm_batched(true, false, kend, D, rows, 1.0f, dS, ld, sS, Q, 3 * C, D, 1.0f, dq + C, 3 * C, D, H);
      gemm_batched(true, false, kend, D, rows, 1.0f, P, ld, sS, dO, C, D, 1.0f, dq + 2 * C, 3 * C, D, H);
    }
  }
}

}  // namespace duet::cuda
