#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/optim.h"

// A backend: one table of every kernel the model calls, plus the memory those kernels work
// on (after ggml-backend). The model holds a `const Backend&` and calls `b.op(...)`; which
// backend it is decides where the math runs. Signatures, shapes and semantics are exactly
// those of kernels/X.h (read the shapes there); pointers are in the backend's memory.
//
// Invariants:
//  - cpu_backend() implements every op; its slots are the duet::cpu functions themselves,
//    so calling through the table is bit-identical to calling them directly.
//  - An op a backend does not implement yet is nullptr (implements() says which).
//  - Memory from alloc() is addressable from the host too (CPU: heap; CUDA: managed
//    memory), because the parameter arena's spans are read and written on the host
//    (initialisation, checkpoints, gradient reductions). Kernels run asynchronously on a
//    device backend: synchronize() before the host reads what they wrote.
//  - Not in the table: set_gemm_threads (process set-up of the CPU library) and the profiler
//    (CPU instrumentation); callers use duet::cpu for those.

namespace duet::kernels {

// The GPU time of a stretch of ops (timing_begin … timing_end), seconds on the host's
// steady clock: from the first kernel's start to the last one's end, and how long the
// kernels themselves ran (the rest the GPU waited for the host).
struct DeviceSpan {
  double t0 = 0, t1 = 0, busy = 0;
};

struct Backend {
  const char* name;  // "cpu", "cuda"

  // Memory. alloc returns storage aligned to at least 64 bytes; free(nullptr) is a no-op.
  void* (*alloc)(size_t bytes);
  void (*free)(void* p);
  // After the calling thread's kernels launched before it (a wait, as synchronize).
  void (*copy_to_host)(void* host_dst, const void* src, size_t bytes);
  void (*copy_from_host)(void* dst, const void* host_src, size_t bytes);
  void (*synchronize)();  // waits until every kernel launched so far has finished

  // Device timing (CUDA events), nullptr on a host backend. timing_begin: the ops the calling
  // thread runs from now on are timed; timing_end: waits for them and gives their span —
  // false when none ran. Costs two event records per op while on; nothing when off.
  bool (*timing_begin)();  // false when the thread is timing already (a nested stretch: no end)
  bool (*timing_end)(DeviceSpan* span);

  // Weights held fixed, nullptr where it changes nothing: between weights_fixed(true) and
  // weights_fixed(false) the caller promises that no weight handed to the linear ops (their
  // `w`) changes, so a backend may keep converted copies of them — the BF16 table casts each
  // weight once per stretch instead of at every call. A training step is such a stretch (the
  // optimizer runs after it); a new stretch drops every copy made before, and outside one
  // nothing is kept. Stretches may nest (ranks run as threads of one process hold it each for
  // their steps). A stretch ends with its kernels done (the engine waits for every stage's
  // last op before weights_fixed(false)).
  void (*weights_fixed)(bool fixed);

  // Marks: order between host threads on the device, nullptr on a host backend (its work is
  // done when the call returns). A mark records how far the calling thread's stream has got
  // (mark_record); mark_synchronize makes the host wait until the device has passed it. Lets a
  // stage's op end without waiting for its kernels, and its next op — on another thread —
  // wait for them only then (model/stage.h).
  void* (*mark_create)();
  void (*mark_record)(void* mark);
  void (*mark_synchronize)(void* mark);
  void (*mark_destroy)(void* mark);

  // gemm.h
  void (*gemm)(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
               int lda, const float* B, int ldb, float beta, float* C, int ldc);
  void (*linear_forward)(float* out, const float* in, const float* w, int N, int I, int O,
                         bool accumulate);
  void (*linear_backward_input)(float* din, const float* dout, const float* w, int N, int I, int O,
                                bool accumulate);
  void (*linear_backward_weight)(float* dw, const float* dout, const float* in, int N, int I,
                                 int O);
  void (*grouped_linear_forward)(float* out, const float* in, const float* const* w,
                                 const int* rows, int groups, int I, int O);
  void (*grouped_linear_backward_input)(float* din, const float* dout, const float* const* w,
                                        const int* rows, int groups, int I, int O);
  void (*grouped_linear_backward_weight)(float* const* dw, const float* dout, const float* in,
                                         const int* rows, int groups, int I, int O);

  // norm.h
  void (*rmsnorm_forward)(float* out, float* rstd, const float* in, const float* weight, int N,
                          int C, float eps);
  void (*rmsnorm_backward_input)(float* din, const float* dout, const float* in,
                                 const float* weight, const float* rstd, int N, int C);
  void (*rmsnorm_backward_weight)(float* dweight, const float* dout, const float* in,
                                  const float* rstd, int N, int C);

  // rope.h
  void (*rope_table)(float* cos_sin, int T, int D, float theta);
  void (*rope_forward)(float* qkv, const float* cos_sin, int B, int T, int H, int D);
  void (*rope_backward)(float* dqkv, const float* cos_sin, int B, int T, int H, int D);

  // attention.h. `saved` is this backend's own: size it with attention_saved_floats (not an
  // op: a size, which differs between backends by design).
  size_t (*attention_saved_floats)(int B, int T, int H, int D);
  void (*attention_forward)(float* out, float* saved, const float* qkv, int B, int T, int H, int D);
  void (*attention_backward)(float* dqkv, const float* dout, const float* qkv, const float* out,
                             const float* saved, int B, int T, int H, int D);

  // activation.h
  void (*swiglu_forward)(float* h, const float* ab, int N, int F);
  void (*swiglu_backward)(float* dab, const float* dh, const float* ab, int N, int F);
  void (*sigmoid_forward)(float* out, const float* in, long n);

  // embedding.h
  void (*embedding_forward)(float* out, const int32_t* tokens, const float* wte, int N, int C);
  void (*embedding_backward_weight)(float* dwte, const float* dout, const int32_t* tokens, int N,
                                    int C);

  // moe.h
  void (*moe_route)(int32_t* expert, float* gate, const float* scores, const float* bias, int N,
                    int E, int K);
  void (*moe_route_backward)(float* dlogits, const float* dgate, const float* scores,
                             const int32_t* expert, const float* gate, int N, int E, int K);
  void (*moe_permute_plan)(int32_t* row_of, int32_t* offsets, const int32_t* expert, int N, int E,
                           int K);
  void (*moe_gather)(float* xp, const float* x, const int32_t* row_of, int N, int K, int C);
  void (*moe_gather_backward)(float* dx, const float* dxp, const int32_t* row_of, int N, int K,
                              int C);
  void (*moe_combine)(float* out, const float* yp, const float* gate, const int32_t* row_of, int N,
                      int K, int C);
  void (*moe_combine_backward)(float* dyp, float* dgate, const float* dout, const float* yp,
                               const float* gate, const int32_t* row_of, int N, int K, int C);

  // loss.h
  double (*cross_entropy_forward)(float* logits_to_probs, const int32_t* targets, int N, int V);
  void (*cross_entropy_backward)(float* probs_to_dlogits, const int32_t* targets, int N, int V,
                                 float scale);

  // optim.h
  void (*adamw_update)(float* params, const float* grads, float* m, float* v, long n,
                       const AdamWParams& p);
  double (*sum_squares)(const float* g, long n);
  void (*sum_squares_ranges)(const float* g, const int64_t* ranges, int count, double* sums);
  void (*scale)(float* x, long n, float s);

  // elementwise.h
  void (*vec_copy)(float* dst, const float* src, long n);
  void (*vec_add)(float* y, const float* x, long n);
  void (*vec_fill)(float* x, long n, float value);
};

// Every op slot of Backend, in declaration order: X(name) per slot. Adding an op means a
// slot above, a line here, and a case in tests/kernels/backend_ops_test.cpp.
// clang-format off
#define DUET_BACKEND_OPS(X)                                                                      \
  X(gemm) X(linear_forward) X(linear_backward_input) X(linear_backward_weight)                  \
  X(grouped_linear_forward) X(grouped_linear_backward_input) X(grouped_linear_backward_weight)   \
  X(rmsnorm_forward) X(rmsnorm_backward_input) X(rmsnorm_backward_weight)                       \
  X(rope_table) X(rope_forward) X(rope_backward)                                                 \
  X(attention_forward) X(attention_backward)                                                     \
  X(swiglu_forward) X(swiglu_backward) X(sigmoid_forward)                                        \
  X(embedding_forward) X(embedding_backward_weight)                                              \
  X(moe_route) X(moe_route_backward) X(moe_permute_plan) X(moe_gather) X(moe_gather_backward)    \
  X(moe_combine) X(moe_combine_backward)                                                         \
  X(cross_entropy_forward) X(cross_entropy_backward)                                             \
  X(adamw_update) X(sum_squares) X(sum_squares_ranges) X(scale)                                  \
  X(vec_copy) X(vec_add) X(vec_fill)
// clang-format on

// The reference backend: oneDNN's SGEMM and the duet::cpu kernels. Always present.
const Backend& cpu_backend();
// The GPU backend, or nullptr when CUDA was not compiled in or no usable device is visible
// (cuda_backend_absent_reason says which).
const Backend* cuda_backend();
// The same with BF16 tensor cores (model.precision: bf16): gemm, the linear ops and attention's
// products round their inputs to BF16 and run on tensor cores with FP32 accumulation and
// output; every other op (attention's softmax included), the master weights and the optimizer
// stay FP32. nullptr exactly when cuda_backend() is.
const Backend* cuda_bf16_backend();
// Why cuda_backend() is nullptr ("" when it is not): not built with CUDA, no device visible,
// or a device without concurrent managed access — the backend's buffers are managed memory,
// which the host reads (MPI sends, the optimizer's host steps) while another thread's kernels
// run; without that attribute any such read faults (pre-Pascal GPUs, some virtualised ones).
std::string cuda_backend_absent_reason();
// Processes that share this process's GPU (ranks on one device, the MPI data plane): the CUDA
// backend's memory cap is the device's memory divided among them. Before its first allocation;
// 1 unless told (no-op without CUDA).
void set_cuda_processes_per_device(int n);
// The widest attention head (d_model / heads) the CUDA kernels take: their tiles hold a head's
// columns in shared memory.
constexpr int kCudaMaxHeadDim = 128;

// Holds `b`'s weights fixed for a scope (weights_fixed(true) … weights_fixed(false), also when
// the scope is left by an exception); nothing on a backend without the slot.
class WeightsFixedScope {
 public:
  explicit WeightsFixedScope(const Backend& b) : b_(b.weights_fixed ? &b : nullptr) {
    if (b_) b_->weights_fixed(true);
  }
  ~WeightsFixedScope() {
    if (b_) b_->weights_fixed(false);
  }
  WeightsFixedScope(const WeightsFixedScope&) = delete;
  WeightsFixedScope& operator=(const WeightsFixedScope&) = delete;

 private:
  const Backend* b_;
};

// Names of the ops (and attention_saved_floats) `b` leaves nullptr (empty for a complete backend).
std::vector<std::string> missing_ops(const Backend& b);
// Throws std::logic_error naming `who` and the missing ops unless `b` implements every op.
void require_all_ops(const Backend& b, const char* who);

}  // namespace duet::kernels
