#pragma once
// What the BF16 kernels share with gemm.cu: the calling thread's cuBLAS handle for BF16 work
// (tensor cores allowed, on the thread's stream) and a cast of FP32 into BF16.
#include <cublas_v2.h>
#include <cuda_bf16.h>

namespace duet::cuda {

cublasHandle_t bf16_blas_handle();
// out[i] = in[i] rounded to BF16 (nearest, ties to even), i < n; on the thread's stream.
void cast_to_bf16(__nv_bfloat16* out, const float* in, long n);

}  // namespace duet::cuda
