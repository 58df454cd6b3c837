#pragma once
#include <string>

// Dense matrix products. Row-major throughout; the CPU backend is oneDNN's SGEMM, which picks
// its kernels from the CPU's features at run time (kernels/cpu/gemm.cpp says why not OpenBLAS).
//
// Linear layers store weights as [out, in] (like torch.nn.Linear), so
//   forward:          out[N,O]  = in[N,I] · w[O,I]ᵀ         ('=' or '+=': a residual stream)
//   backward-input:   din[N,I]  = dout[N,O] · w[O,I]      (activation gradient: '=' or '+=')
//   backward-weight:  dw[O,I]  += dout[N,O]ᵀ · in[N,I]    (parameter gradient: always '+=')
// Parameter gradients accumulate so that micro-batches add up; activation gradients are
// written unless `accumulate` asks to add (residual streams).

namespace duet::cpu {

// C[M,N] = alpha · op(A) · op(B) + beta · C, with leading dimensions (row strides).
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);

void linear_forward(float* out, const float* in, const float* w, int N, int I, int O,
                    bool accumulate);
void linear_backward_input(float* din, const float* dout, const float* w, int N, int I, int O,
                           bool accumulate);
void linear_backward_weight(float* dw, const float* dout, const float* in, int N, int I, int O);

// Grouped linear layers: `groups` runs of consecutive rows, group g's rows[g] rows (0 allowed)
// through its own weight w[g] (O×I) — a MoE layer's experts over their permuted rows. The same
// contract per group as the linear ops above (backward-input writes, backward-weight adds);
// `rows`, `w` and `dw` are host arrays. One call per layer lets a device backend convert the
// activations once for all groups, not once per expert (kernels/grouped_linear.h defines them).
void grouped_linear_forward(float* out, const float* in, const float* const* w, const int* rows,
                            int groups, int I, int O);
void grouped_linear_backward_input(float* din, const float* dout, const float* const* w,
                                   const int* rows, int groups, int I, int O);
void grouped_linear_backward_weight(float* const* dw, const float* dout, const float* in,
                                    const int* rows, int groups, int I, int O);

// Compute threads (kernels/cpu/thread_pool.h): the most one product, or one of the other
// kernels, is split over (small ones use fewer, chosen by shape); unset or 0: OMP_NUM_THREADS,
// else the CPUs this process may run on. Applies to every thread that calls a kernel
// afterwards; never more than the CPUs the calling thread may run on (kernels/cpu/thread_pool.h).
// Same CPU + same setting + same CPUs allowed ⇒ bit-identical results.
void set_gemm_threads(int threads);
int gemm_threads();

// How many operands the CPU GEMM has copied so far, in this process, to give their rows a
// leading dimension its library's kernels read fast (kernels/cpu/gemm.cpp): for tests.
long gemm_operand_copies();

// For the run log: the library, its version and the instruction set its kernels use here.
std::string gemm_library();

}  // namespace duet::cpu
