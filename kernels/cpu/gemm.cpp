#include "kernels/gemm.h"
#include "kernels/profile.h"

#include <cblas.h>

namespace duet::cpu {

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  DUET_PROFILE("gemm");
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void linear_forward(float* out, const float* in, const float* w, int N, int I, int O) {
  gemm(false, true, N, O, I, 1.0f, in, I, w, I, 0.0f, out, O);
}

void linear_backward_input(float* din, const float* dout, const float* w, int N, int I, int O,
                           bool accumulate) {
  gemm(false, false, N, I, O, 1.0f, dout, O, w, I, accumulate ? 1.0f : 0.0f, din, I);
}

void linear_backward_weight(float* dw, const float* dout, const float* in, int N, int I, int O) {
  if (N == 0) return;
  gemm(true, false, O, I, N, 1.0f, dout, O, in, I, 1.0f, dw, I);
}

void set_gemm_threads(int threads) {
  if (threads > 0) openblas_set_num_threads(threads);
}

int gemm_threads() { return openblas_get_num_threads(); }

}  // namespace duet::cpu
