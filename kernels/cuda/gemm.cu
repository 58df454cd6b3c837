// GEMMs through cuBLAS in FP32 (TF32 off: the reference path), and in BF16 (model.precision:
// bf16): both inputs rounded to BF16 on the way in (a cast kernel into scratch), tensor cores,
// FP32 accumulation and output — master weights, gradients and optimizer stay FP32. Row-major
// C = op(A)·op(B) is computed as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, which is the same memory. One handle per
// host thread, on that thread's stream (kernels/cuda/streams.h).
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include "kernels/cuda/blas.h"
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

}  // namespace

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
  CUBLAS_CHECK(cublasGemmEx(bf16_blas_handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N,
                            M, K, &alpha, b, CUDA_R_16BF, ldb, a, CUDA_R_16BF, lda, &beta, C, CUDA_R_32F, ldc,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void linear_forward_bf16(float* out, const float* in, const float* w, int N, int I, int O) {
  gemm_bf16(false, true, N, O, I, 1.0f, in, I, w, I, 0.0f, out, O);
}

void linear_backward_input_bf16(float* din, const float* dout, const float* w, int N, int I, int O, bool accumulate) {
  gemm_bf16(false, false, N, I, O, 1.0f, dout, O, w, I, accumulate ? 1.0f : 0.0f, din, I);
}

void linear_backward_weight_bf16(float* dw, const float* dout, const float* in, int N, int I, int O) {
  gemm_bf16(true, false, O, I, N, 1.0f, dout, O, in, I, 1.0f, dw, I);
}

void linear_forward(float* out, const float* in, const float* w, int N, int I, int O) {
  gemm(false, true, N, O, I, 1.0f, in, I, w, I, 0.0f, out, O);
}

void linear_backward_input(float* din, const float* dout, const float* w, int N, int I, int O, bool accumulate) {
  gemm(false, false, N, I, O, 1.0f, dout, O, w, I, accumulate ? 1.0f : 0.0f, din, I);
}

void linear_backward_weight(float* dw, const float* dout, const float* in, int N, int I, int O) {
  gemm(true, false, O, I, N, 1.0f, dout, O, in, I, 1.0f, dw, I);
}

}  // namespace duet::cuda
