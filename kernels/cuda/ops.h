#pragma once
// The CUDA kernels: the same signatures and semantics as the duet::cpu functions of
// kernels/X.h (read the shapes and the '=' / '+=' contract there), on device pointers, on the
// calling thread's current stream. Functions returning a value (cross-entropy, sum of
// squares) synchronise. Gathered into the CUDA backend table by kernels/cuda/backend.cu.
#include <cstddef>
#include <cstdint>

#include "kernels/optim.h"

namespace duet::cuda {

// gemm.cu (cuBLAS, FP32, TF32 off)
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc);
void linear_forward(float* out, const float* in, const float* w, int N, int I, int O, bool accumulate);
void linear_backward_input(float* din, const float* dout, const float* w, int N, int I, int O, bool accumulate);
void linear_backward_weight(float* dw, const float* dout, const float* in, int N, int I, int O);
void grouped_linear_forward(float* out, const float* in, const float* const* w, const int* rows, int groups, int I,
                            int O);
void grouped_linear_backward_input(float* din, const float* dout, const float* const* w, const int* rows, int groups,
                                   int I, int O);
void grouped_linear_backward_weight(float* const* dw, const float* dout, const float* in, const int* rows, int groups,
                                    int I, int O);

// norm.cu
void rmsnorm_forward(float* out, float* rstd, const float* in, const float* weight, int N, int C, float eps);
void rmsnorm_backward_input(float* din, const float* dout, const float* in, const float* weight, const float* rstd,
                            int N, int C);
void rmsnorm_backward_weight(float* dweight, const float* dout, const float* in, const float* rstd, int N, int C);

// rope.cu
void rope_table(float* cos_sin, int T, int D, float theta);
void rope_forward(float* qkv, const float* cos_sin, int B, int T, int H, int D);
void rope_backward(float* dqkv, const float* cos_sin, int B, int T, int H, int D);

// attention.cu (flash-style; `saved` is the rows' log-sum-exp, B·H·T floats; D at most
// kernels::kCudaMaxHeadDim, else std::invalid_argument)
void attention_forward(float* out, float* saved, const float* qkv, int B, int T, int H, int D);
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* saved, int B,
                        int T, int H, int D);
size_t attention_saved_floats(int B, int T, int H, int D);

// activation.cu
void swiglu_forward(float* h, const float* ab, int N, int F);
void swiglu_backward(float* dab, const float* dh, const float* ab, int N, int F);
void sigmoid_forward(float* out, const float* in, long n);

// embedding.cu
void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C);
void embedding_backward_weight(float* dwte, const float* dout, const int32_t* tokens, int N, int C);

// moe.cu
void moe_route(int32_t* expert, float* gate, const float* scores, const float* bias, int N, int E, int K);
void moe_route_backward(float* dlogits, const float* dgate, const float* scores, const int32_t* expert,
                        const float* gate, int N, int E, int K);
void moe_permute_plan(int32_t* row_of, int32_t* offsets, const int32_t* expert, int N, int E, int K);
void moe_gather(float* xp, const float* x, const int32_t* row_of, int N, int K, int C);
void moe_gather_backward(float* dx, const float* dxp, const int32_t* row_of, int N, int K, int C);
void moe_combine(float* out, const float* yp, const float* gate, const int32_t* row_of, int N, int K, int C);
void moe_combine_backward(float* dyp, float* dgate, const float* dout, const float* yp, const float* gate,
                          const int32_t* row_of, int N, int K, int C);

// loss.cu
double cross_entropy_forward(float* logits_to_probs, const int32_t* targets, int N, int V);
void cross_entropy_backward(float* probs_to_dlogits, const int32_t* targets, int N, int V, float scale);

// gemm.cu, BF16 (the cuda-bf16 table: model.precision bf16)
void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
               int ldb, float beta, float* C, int ldc);
void linear_forward_bf16(float* out, const float* in, const float* w, int N, int I, int O, bool accumulate);
void linear_backward_input_bf16(float* din, const float* dout, const float* w, int N, int I, int O, bool accumulate);
void linear_backward_weight_bf16(float* dw, const float* dout, const float* in, int N, int I, int O);
// The grouped ops cast the activations once for all groups (one kernel, not one per expert).
void grouped_linear_forward_bf16(float* out, const float* in, const float* const* w, const int* rows, int groups,
                                 int I, int O);
void grouped_linear_backward_input_bf16(float* din, const float* dout, const float* const* w, const int* rows,
                                        int groups, int I, int O);
void grouped_linear_backward_weight_bf16(float* const* dw, const float* dout, const float* in, const int* rows,
                                         int groups, int I, int O);
// The ops the cuda-bf16 table takes from above as op##_bf16 (the rest are the FP32 table's).
#define DUET_CUDA_BF16_OPS(X)                                                                                         \
  X(gemm) X(linear_forward) X(linear_backward_input) X(linear_backward_weight) X(grouped_linear_forward)              \
  X(grouped_linear_backward_input) X(grouped_linear_backward_weight) X(attention_forward) X(attention_backward)
// The cuda-bf16 table's weights_fixed (kernels/backend.h): while fixed, the forward and
// input-backward linear ops (grouped ones included) cast each weight once into a BF16 copy
// kept for the stretch.
void bf16_weights_fixed(bool fixed);
// Weights cast into kept copies since the process started, and copies held now (for tests).
long bf16_weight_casts();
long bf16_weight_copies_held();
// attention_bf16.cu: the same contract and `saved` (the rows' log-sum-exp) as attention.cu,
// the products on tensor cores (BF16 inputs, FP32 accumulation); any head width
void attention_forward_bf16(float* out, float* saved, const float* qkv, int B, int T, int H, int D);
void attention_backward_bf16(float* dqkv, const float* dout, const float* qkv, const float* out, const float* saved,
                             int B, int T, int H, int D);

// optim.cu
void adamw_update(float* params, const float* grads, float* m, float* v, long n, const kernels::AdamWParams& p);
double sum_squares(const float* g, long n);
void sum_squares_ranges(const float* g, const int64_t* ranges, int count, double* sums);
void scale(float* x, long n, float s);

// elementwise.cu
void vec_copy(float* dst, const float* src, long n);
void vec_add(float* y, const float* x, long n);
void vec_fill(float* x, long n, float value);

}  // namespace duet::cuda
