// GEMMs through cuBLAS in FP32 (TF32 off: the reference path). Row-major C = op(A)·op(B) is
// computed as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, which is the same memory. One handle per
// host thread, on that thread's stream (kernels/cuda/streams.h).
#include <cublas_v2.h>

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

}  // namespace

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
