// GEMMs through cuBLAS in FP32 (TF32 off: the reference path), and in BF16 (model.precision:
// bf16): both inputs rounded to BF16 on the way in (a cast kernel into scratch), tensor cores,
// FP32 accumulation and output — master weights, gradients and optimizer stay FP32. While a
// training step holds the weights fixed (Backend::weights_fixed) the linear ops cast each
// weight once and keep the copy for the step, instead of casting it at every call (forward
// and input backward of every micro-batch: at the H200 benchmark's shape, 8 casts of 10.5 GB
// of weights per step become 1). Row-major
// C = op(A)·op(B) is computed as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, which is the same memory. One handle per
// host thread, on that thread's stream (kernels/cuda/streams.h).
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/blas.h"
#include "kernels/grouped_linear.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace duet::cuda {

namespace {

cublasHandle_t handle() {
  thread_local cublasHandle_t h = [] {
    cublasHandle_t c = nullptr;
    CUBLAS_CHECK(cublasCreate(&c));
    CUBLAS_CHECK(cublasSetMathMode(c, CUBLAS_PEDANTIC_MATH));  // FP32 throughout, no TF32
    CUBLAS_CHECK(cublasSetStream(c, cudaStreamPerThread));     // with this thread's kernels: streams.h
    return c;
  }();
  return h;
}

__global__ void to_bf16_kernel(__nv_bfloat16* out, const float* in, long n) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

// A row-major matrix of `rows` × `cols` with leading dimension ld, rounded to BF16 into
// scratch `slot` with the same leading dimension.
const __nv_bfloat16* to_bf16(const float* X, long rows, long cols, int ld, int slot) {
  const long n = (rows - 1) * ld + cols;  // the last row ends at its last column
  auto* out = static_cast<__nv_bfloat16*>(scratch(sizeof(__nv_bfloat16) * n, slot));
  cast_to_bf16(out, X, n);
  return out;
}

// A row-major C (M×N) = alpha·op(A)·op(B) + beta·C of BF16 operands, FP32 C.
void gemm_bf16_of(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const __nv_bfloat16* a, int lda,
                  const __nv_bfloat16* b, int ldb, float beta, float* C, int ldc) {
  CUBLAS_CHECK(cublasGemmEx(bf16_blas_handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N,
                            M, K, &alpha, b, CUDA_R_16BF, ldb, a, CUDA_R_16BF, lda, &beta, C, CUDA_R_32F, ldc,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// Weights held fixed (bf16_weights_fixed): a BF16 copy per weight, by its FP32 address, made at
// its first use in a stretch and kept (the buffer stays for the next stretch, which casts into
// it again). Shared by the host threads: a copy made on one thread's stream is used on
// another's after its `ready` event — a wait on the device, not the host.
struct WeightCopy {
  __nv_bfloat16* bf16 = nullptr;
  long n = 0;
  long stretch = -1;  // the stretch it was cast in
  cudaEvent_t ready = nullptr;
};
struct WeightCopies {
  std::mutex mu;
  int fixed = 0;     // holders: ranks run as threads of one process each hold it for their steps
  long stretch = 0;  // every weights_fixed(true) starts a new one: the copies made before are stale
  long casts = 0;
  std::unordered_map<const float*, WeightCopy> by_weight;
  std::vector<__nv_bfloat16*> retired;  // buffers replaced mid-stretch, freed once nobody holds
};
WeightCopies& weight_copies() {
  static auto* w = new WeightCopies;  // never destroyed: kernels may be launched from exit paths
  return *w;
}

// The BF16 form of weight w (n floats) for the calling thread's stream: the stretch's copy
// while weights are fixed, else a cast into scratch `slot`.
const __nv_bfloat16* weight_bf16(const float* w, long n, int slot) {
  WeightCopies& c = weight_copies();
  std::lock_guard lock(c.mu);
  if (c.fixed == 0) return to_bf16(w, 1, n, (int)n, slot);
  WeightCopy& k = c.by_weight[w];
  if (k.stretch == c.stretch && k.n == n) {
    CUDA_CHECK(cudaStreamWaitEvent(cudaStreamPerThread, k.ready, 0));  // made on another stream, perhaps
    return k.bf16;
  }
  if (k.n != n) {  // new, or the address now holds another weight: a buffer of its size
    // Another stream may still read the old one this stretch: freed when nobody holds.
    if (k.bf16) c.retired.push_back(k.bf16);
    CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&k.bf16), sizeof(__nv_bfloat16) * n, cudaStreamPerThread));
    k.n = n;
  }
  if (!k.ready) CUDA_CHECK(cudaEventCreateWithFlags(&k.ready, cudaEventDisableTiming));
  cast_to_bf16(k.bf16, w, n);
  CUDA_CHECK(cudaEventRecord(k.ready, cudaStreamPerThread));
  k.stretch = c.stretch;
  ++c.casts;
  return k.bf16;
}

}  // namespace

void bf16_weights_fixed(bool fixed) {
  WeightCopies& c = weight_copies();
  std::lock_guard lock(c.mu);
  if (!fixed) {
    c.fixed = std::max(0, c.fixed - 1);
    return;
  }
  if (c.fixed == 0) {
    // Nobody is in a stretch, and a stretch ends with its kernels done (the engine waits for
    // every stage's last op): buffers replaced before, and copies of weights no stretch used
    // lately (an arena that is gone), can go.
    for (__nv_bfloat16* p : c.retired) CUDA_CHECK(cudaFreeAsync(p, cudaStreamPerThread));
    c.retired.clear();
    for (auto it = c.by_weight.begin(); it != c.by_weight.end();) {
      if (it->second.stretch >= c.stretch - 2) {  // used in one of the last three
        ++it;
        continue;
      }
      if (it->second.bf16) CUDA_CHECK(cudaFreeAsync(it->second.bf16, cudaStreamPerThread));
      if (it->second.ready) CUDA_CHECK(cudaEventDestroy(it->second.ready));
      it = c.by_weight.erase(it);
    }
  }
  ++c.fixed;
  ++c.stretch;  // every copy made before is stale: the optimizer ran since
}

long bf16_weight_casts() {
  WeightCopies& c = weight_copies();
  std::lock_guard lock(c.mu);
  return c.casts;
}

long bf16_weight_copies_held() {
  WeightCopies& c = weight_copies();
  std::lock_guard lock(c.mu);
  return (long)c.by_weight.size();
}

// BF16 GEMMs: tensor cores allowed (the default math mode), FP32 accumulation and output.
cublasHandle_t bf16_blas_handle() {
  thread_local cublasHandle_t h = [] {
    cublasHandle_t c = nullptr;
    CUBLAS_CHECK(cublasCreate(&c));
    CUBLAS_CHECK(cublasSetStream(c, cudaStreamPerThread));
    return c;
  }();
  return h;
}

void cast_to_bf16(__nv_bfloat16* out, const float* in, long n) {
  if (n <= 0) return;
  to_bf16_kernel<<<blocks_for(n), kThreads>>>(out, in, n);
  DUET_CUDA_LAUNCHED();
}

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // C = beta·C
    const float zero = 0.0f;
    if (beta == 0.0f)  // as BLAS: C is overwritten, whatever it held (NaN included)
      CUDA_CHECK(cudaMemset2DAsync(C, sizeof(float) * ldc, 0, sizeof(float) * N, M));
    else if (beta != 1.0f)
      CUBLAS_CHECK(cublasSgeam(handle(), CUBLAS_OP_N, CUBLAS_OP_N, N, M, &beta, C, ldc, &zero, C, ldc, C, ldc));
    return;
  }
  CUBLAS_CHECK(cublasSgemm(handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                           &alpha, B, ldb, A, lda, &beta, C, ldc));
}

void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
               int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  const __nv_bfloat16* a = to_bf16(A, trans_a ? K : M, trans_a ? M : K, lda, 4);
  const __nv_bfloat16* b = to_bf16(B, trans_b ? N : K, trans_b ? K : N, ldb, 5);
  gemm_bf16_of(trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, C, ldc);
}

// The linear ops know which operand is the weight (w: O×I): its BF16 form may be the stretch's
// kept copy (bf16_weights_fixed); the activations are cast at every call.
void linear_forward_bf16(float* out, const float* in, const float* w, int N, int I, int O, bool accumulate) {
  const float beta = accumulate ? 1.0f : 0.0f;
  if (N <= 0 || O <= 0 || I <= 0) return gemm_bf16(false, true, N, O, I, 1.0f, in, I, w, I, beta, out, O);
  const __nv_bfloat16* wb = weight_bf16(w, (long)O * I, 5);
  gemm_bf16_of(false, true, N, O, I, 1.0f, to_bf16(in, N, I, I, 4), I, wb, I, beta, out, O);
}

void linear_backward_input_bf16(float* din, const float* dout, const float* w, int N, int I, int O, bool accumulate) {
  if (N <= 0 || O <= 0 || I <= 0)
    return gemm_bf16(false, false, N, I, O, 1.0f, dout, O, w, I, accumulate ? 1.0f : 0.0f, din, I);
  const __nv_bfloat16* wb = weight_bf16(w, (long)O * I, 5);
  gemm_bf16_of(false, false, N, I, O, 1.0f, to_bf16(dout, N, O, O, 4), O, wb, I, accumulate ? 1.0f : 0.0f, din, I);
}

void linear_backward_weight_bf16(float* dw, const float* dout, const float* in, int N, int I, int O) {
  gemm_bf16(true, false, O, I, N, 1.0f, dout, O, in, I, 1.0f, dw, I);
}

namespace {

long total_rows(const int* rows, int groups) {
  long n = 0;
  for (int g = 0; g < groups; ++g) n += rows[g];
  return n;
}

// out (R × N) = act (R × K) · op(w[g]) group by group, op(w) = wᵀ when trans_w (w: O × I, row
// major): act cast to BF16 once for all groups (scratch slot 4), each weight's BF16 form from
// weight_bf16 (slot 5 when not kept).
void times_each_weight_bf16(float* out, const float* act, const float* const* w, const int* rows, int groups, long R,
                            int K, int N, bool trans_w, int I, int O) {
  const __nv_bfloat16* a = to_bf16(act, R, K, K, 4);
  long r0 = 0;
  for (int g = 0; g < groups; r0 += rows[g++])
    if (rows[g] > 0)
      gemm_bf16_of(false, trans_w, rows[g], N, K, 1.0f, a + r0 * K, K, weight_bf16(w[g], (long)O * I, 5), I, 0.0f,
                   out + r0 * N, N);
}

}  // namespace

// One cast of all groups' activations, then a GEMM per non-empty group on its weight's BF16
// form (times_each_weight_bf16) — per group the same BF16 operand values as
// the linear ops group by group; the same bits where cuBLAS picks the same kernel (it may
// choose by the operands' alignment, here that of the group's first row).
void grouped_linear_forward_bf16(float* out, const float* in, const float* const* w, const int* rows, int groups,
                                 int I, int O) {
  const long R = total_rows(rows, groups);
  if (R <= 0 || O <= 0 || I <= 0)
    return kernels::grouped_forward_by_group<&linear_forward_bf16>(out, in, w, rows, groups, I, O);
  times_each_weight_bf16(out, in, w, rows, groups, R, I, O, /*trans_w=*/true, I, O);
}

void grouped_linear_backward_input_bf16(float* din, const float* dout, const float* const* w, const int* rows,
                                        int groups, int I, int O) {
  const long R = total_rows(rows, groups);
  if (R <= 0 || O <= 0 || I <= 0)
    return kernels::grouped_backward_input_by_group<&linear_backward_input_bf16>(din, dout, w, rows, groups, I, O);
  times_each_weight_bf16(din, dout, w, rows, groups, R, O, I, /*trans_w=*/false, I, O);
}

void grouped_linear_backward_weight_bf16(float* const* dw, const float* dout, const float* in, const int* rows,
                                         int groups, int I, int O) {
  const long R = total_rows(rows, groups);
  if (R <= 0 || O <= 0 || I <= 0)
    return kernels::grouped_backward_weight_by_group<&linear_backward_weight_bf16>(dw, dout, in, rows, groups, I, O);
  const __nv_bfloat16* d = to_bf16(dout, R, O, O, 4);
  const __nv_bfloat16* x = to_bf16(in, R, I, I, 5);
  long r0 = 0;
  for (int g = 0; g < groups; r0 += rows[g++])
    if (rows[g] > 0)
      gemm_bf16_of(true, false, O, I, rows[g], 1.0f, d + r0 * O, O, x + r0 * I, I, 1.0f, dw[g], I);
}

void linear_forward(float* out, const float* in, const float* w, int N, int I, int O, bool accumulate) {
  gemm(false, true, N, O, I, 1.0f, in, I, w, I, accumulate ? 1.0f : 0.0f, out, O);
}

void linear_backward_input(float* din, const float* dout, const float* w, int N, int I, int O, bool accumulate) {
  gemm(false, false, N, I, O, 1.0f, dout, O, w, I, accumulate ? 1.0f : 0.0f, din, I);
}

void linear_backward_weight(float* dw, const float* dout, const float* in, int N, int I, int O) {
  gemm(true, false, O, I, N, 1.0f, dout, O, in, I, 1.0f, dw, I);
}

void grouped_linear_forward(float* out, const float* in, const float* const* w, const int* rows, int groups, int I,
                            int O) {
  kernels::grouped_forward_by_group<&linear_forward>(out, in, w, rows, groups, I, O);
}

void grouped_linear_backward_input(float* din, const float* dout, const float* const* w, const int* rows, int groups,
                                   int I, int O) {
  kernels::grouped_backward_input_by_group<&linear_backward_input>(din, dout, w, rows, groups, I, O);
}

void grouped_linear_backward_weight(float* const* dw, const float* dout, const float* in, const int* rows, int groups,
                                    int I, int O) {
  kernels::grouped_backward_weight_by_group<&linear_backward_weight>(dw, dout, in, rows, groups, I, O);
}

}  // namespace duet::cuda
