#pragma once
// Stand-in for the cuBLAS calls duet makes (column-major, as cuBLAS), for the host emulation
// of the kernels (../emu.h): what it checks is that the kernels call cuBLAS with the right
// transposes, sizes and leading dimensions, and on the right stream: each call is queued on
// its handle's stream (alpha and beta read at the call, as in host pointer mode). Plain loops
// summing over k in order; like cuBLAS, C is not read when beta is 0 and B not when geam's
// beta is 0.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

struct cublasContext {
  cudaStream_t stream = nullptr;
};
using cublasHandle_t = cublasContext*;
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0 };
enum cublasOperation_t { CUBLAS_OP_N, CUBLAS_OP_T };
enum cublasMath_t { CUBLAS_DEFAULT_MATH, CUBLAS_PEDANTIC_MATH };

inline const char* cublasGetStatusString(cublasStatus_t) { return "CUBLAS_STATUS_SUCCESS (host emulation)"; }
inline cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext;  // never destroyed: the kernels keep theirs for the process
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
// Queues `work` on the handle's stream (cudaStreamPerThread: the calling thread's).
template <class Work>
cublasStatus_t cublas_emu_queue(cublasHandle_t h, Work work) {
  duet_emu::count_blas_call();
  duet_emu::enqueue(duet_emu::stream_of(h->stream), work);
  return CUBLAS_STATUS_SUCCESS;
}

// op(X)(i, j) of a column-major X with leading dimension ld, as a float.
inline float cublas_emu_float(float x) { return x; }
inline float cublas_emu_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T>
float cublas_emu_at(const T* X, int ld, cublasOperation_t op, int i, int j) {
  return cublas_emu_float(op == CUBLAS_OP_N ? X[i + (size_t)j * ld] : X[j + (size_t)i * ld]);
}

// Queues C (m×n) = alpha·op(A)·op(B) + beta·C, op(A) m×k, op(B) k×n, FP32 C and sums.
template <class T>
cublasStatus_t cublas_emu_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                               float alpha, const T* A, int lda, const T* B, int ldb, float beta, float* C, int ldc) {
  return cublas_emu_queue(h, [=] {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float acc = 0.0f;
        for (int p = 0; p < k; ++p) acc += cublas_emu_at(A, lda, ta, i, p) * cublas_emu_at(B, ldb, tb, p, j);
        float& c = C[i + (size_t)j * ldc];
        c = alpha * acc + (beta == 0.0f ? 0.0f : beta * c);
      }
  });
}

inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float* alpha, const float* A, int lda, const float* B, int ldb,
                                  const float* beta, float* C, int ldc) {
  return cublas_emu_gemm(h, ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
}

// cublasGemmEx for the one combination duet uses: BF16 A and B, FP32 C, FP32 accumulation
// (sums over k in order here; cuBLAS's order differs, which the BF16 bounds allow for).
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16BF = 14 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };
inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const void* alpha, const void* A, cudaDataType_t a_type, int lda, const void* B,
                                   cudaDataType_t b_type, int ldb, const void* beta, void* C, cudaDataType_t c_type,
                                   int ldc, cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (a_type != CUDA_R_16BF || b_type != CUDA_R_16BF || c_type != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F) {
    std::fprintf(stderr, "emulated cublasGemmEx: only BF16 x BF16 -> FP32 with FP32 compute is emulated\n");
    std::abort();
  }
  return cublas_emu_gemm(h, ta, tb, m, n, k, *static_cast<const float*>(alpha), static_cast<const __nv_bfloat16*>(A),
                         lda, static_cast<const __nv_bfloat16*>(B), ldb, *static_cast<const float*>(beta),
                         static_cast<float*>(C), ldc);
}

// cublasGemmEx over `batch` matrices at strides sA, sB, sC (elements).
inline cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                 int n, int k, const void* alpha, const void* A,
                                                 cudaDataType_t a_type, int lda, long long sA, const void* B,
                                                 cudaDataType_t b_type, int ldb, long long sB, const void* beta,
                                                 void* C, cudaDataType_t c_type, int ldc, long long sC, int batch,
                                                 cublasComputeType_t compute, cublasGemmAlgo_t algo) {
  for (int i = 0; i < batch; ++i)
    cublasGemmEx(h, ta, tb, m, n, k, alpha, static_cast<const __nv_bfloat16*>(A) + i * sA, a_type, lda,
                 static_cast<const __nv_bfloat16*>(B) + i * sB, b_type, ldb, beta, static_cast<float*>(C) + i * sC,
                 c_type, ldc, compute, algo);
  return CUBLAS_STATUS_SUCCESS;
}

// C (m×n) = alpha·op(A) + beta·op(B).
inline cublasStatus_t cublasSgeam(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                  const float* alpha, const float* A, int lda, const float* beta, const float* B,
                                  int ldb, float* C, int ldc) {
  return cublas_emu_queue(h, [=, al = *alpha, be = *beta] {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        const float a = al == 0.0f ? 0.0f : al * cublas_emu_at(A, lda, ta, i, j);
        const float b = be == 0.0f ? 0.0f : be * cublas_emu_at(B, ldb, tb, i, j);
        C[i + (size_t)j * ldc] = a + b;
      }
  });
}
