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
  duet_emu::enqueue(duet_emu::stream_of(h->stream), work);
  return CUBLAS_STATUS_SUCCESS;
}

// op(X)(i, j) of a column-major X with leading dimension ld.
inline float cublas_emu_at(const float* X, int ld, cublasOperation_t op, int i, int j) {
  return op == CUBLAS_OP_N ? X[i + (size_t)j * ld] : X[j + (size_t)i * ld];
}

// C (m×n) = alpha·op(A)·op(B) + beta·C, op(A) m×k, op(B) k×n.
inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float* alpha, const float* A, int lda, const float* B, int ldb,
                                  const float* beta, float* C, int ldc) {
  return cublas_emu_queue(h, [=, al = *alpha, be = *beta] {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float acc = 0.0f;
        for (int p = 0; p < k; ++p) acc += cublas_emu_at(A, lda, ta, i, p) * cublas_emu_at(B, ldb, tb, p, j);
        float& c = C[i + (size_t)j * ldc];
        c = al * acc + (be == 0.0f ? 0.0f : be * c);
      }
  });
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
  auto at = [](const void* X, int ld, cublasOperation_t op, int i, int j) {
    const auto* x = static_cast<const __nv_bfloat16*>(X);
    return __bfloat162float(op == CUBLAS_OP_N ? x[i + (size_t)j * ld] : x[j + (size_t)i * ld]);
  };
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  float* c = static_cast<float*>(C);
  return cublas_emu_queue(h, [=] {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float acc = 0.0f;
        for (int p = 0; p < k; ++p) acc += at(A, lda, ta, i, p) * at(B, ldb, tb, p, j);
        float& out = c[i + (size_t)j * ldc];
        out = al * acc + (be == 0.0f ? 0.0f : be * out);
      }
  });
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
