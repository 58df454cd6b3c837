#include "kernels/gemm.h"
#include "kernels/profile.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/buffer.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/grouped_linear.h"

// SGEMM is oneDNN's (docs/PERFORMANCE.md, "CPU GEMM": measured against OpenBLAS on the model's
// shapes). oneDNN picks its kernels from the CPU's feature flags (AVX-512, AVX2, …), not from
// a table of CPU models, so a CPU newer than the library still gets its widest kernels;
// OpenBLAS 0.3.21 falls back to generic SSE kernels on a model it does not know.
//
// Threads: Debian's oneDNN runs its own threads on OpenMP, whose idle threads spin a count
// fixed at start-up (kernels/cpu/thread_pool.h says why that is wrong for shared cores). So
// oneDNN is only ever asked for one thread, and a product worth more than one thread is split
// here: C along its longer side (its rows, or its columns) into one contiguous
// range per thread, each a one-thread oneDNN product on the pool's threads. Every element of C
// is then a whole K-sum computed by one call, and the ranges are a function of the shape and
// the thread setting only, so on one CPU at one setting the bits are the same every time.
// Small products run on fewer threads (kMinFlopsPerThread): a fork and join costs more than
// they take, and on a busy machine a helper that is not scheduled stalls the whole call.

namespace duet::cpu {

namespace {

std::atomic<int> g_threads{0};  // 0: not set (default_threads)
std::atomic<long> g_operand_copies{0};

// 2·M·N·K per thread at least: ~25 µs of work on one AVX-512 core.
constexpr double kMinFlopsPerThread = 4e6;
// Ranges start on multiples of this many rows or columns (a register block of oneDNN's kernels).
constexpr int kAlign = 16;

int default_threads() {
  static const int n = [] {
    if (const char* e = std::getenv("OMP_NUM_THREADS"); e && std::atoi(e) > 0) return std::atoi(e);
    return usable_cpus();
  }();
  return n;
}

int threads_for(int M, int N, int K) {
  const int set = gemm_threads();
  if (set <= 1) return 1;
  const double flops = 2.0 * M * N * K;
  return std::max(1, std::min(set, (int)(flops / kMinFlopsPerThread)));
}

// oneDNN's AVX2 SGEMM multiplies small products in place, with its "no-copy" kernels, and
// packs larger ones into its own buffers first. This is the choice oneDNN 2.6 (Debian 12's)
// makes for one thread (nocopy_checker_avx2 in its gemm_driver.cpp, with nthr = 1), in its
// column-major terms: its m, n are our N, M and its transb is our trans_a. It looks at sizes
// only, never at the leading dimensions. (Its AVX-512 rule has a test for leading dimensions
// that are multiples of 256, but its size test comes first and takes these products in place
// too; whether AVX-512's kernels suffer from it is not measured, and nothing is copied there.)
bool onednn_avx2_no_copy(bool trans_a, int M, int N, int K) {
  const long m = N, n = M, k = K;
  if (1.0 / m + 1.0 / n >= 0.0038) return true;
  if (m <= 378 && n <= 378 && k >= 378) return false;
  if (m >= 378 && k >= 378) return false;
  if (m <= 128 && n <= 128) return true;
  if (!trans_a) return n <= 16 || k <= 2 || (m <= 64 && n >= 16);
  return n <= 1 || k <= 1;
}

// Whether this process's oneDNN runs its AVX or AVX2 kernels (below AVX-512), where the
// no-copy kernels above read the operands in place.
bool onednn_runs_avx2() {
  static const bool avx2 = [] {
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return isa == dnnl_cpu_isa_avx || isa == dnnl_cpu_isa_avx2 || isa == dnnl_cpu_isa_avx2_vnni;
  }();
  return avx2;
}

// A thread's buffer for copies: the CPU backend's memory, 64-byte aligned as the arena's
// tensors are (oneDNN's AVX no-copy kernels read an operand in place only when its rows are
// 32-byte aligned, and repack it as they go otherwise: the same sums either way, not the same
// speed). Always the CPU's, whatever backend the model computes on.
using CopyBuffer = kernels::Buffer<float>;

// Rows of `cols` floats, `ld` apart, copied into `buf` with rows `cols` rounded up to 16
// floats apart (64 bytes), 16 more when that is a multiple of 128 floats.
const float* padded_rows(const float* X, int rows, int cols, int ld, CopyBuffer& buf, int* new_ld) {
  int n = (cols + 15) / 16 * 16;
  if (n % 128 == 0) n += 16;
  if (buf.size() < (size_t)rows * n) buf.resize((size_t)rows * n);
  float* out = buf.data();
  g_operand_copies.fetch_add(1, std::memory_order_relaxed);
  for (int r = 0; r < rows; ++r) std::memcpy(out + (size_t)r * n, X + (size_t)r * ld, sizeof(float) * cols);
  *new_ld = n;
  return out;
}

void sgemm_one_thread(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                      const float* B, int ldb, float beta, float* C, int ldc) {
  thread_local bool one_thread = false;  // this thread's OpenMP setting, which oneDNN reads
  if (!one_thread) omp_set_num_threads(1), one_thread = true;
  // The no-copy kernels walk an operand's rows at its leading dimension; at a multiple of 512
  // floats (2 KiB) those rows fall on one or two cache sets and evict each other. With oneDNN's
  // AVX2 kernels on one thread, TN 512 × 512 × 1024 ran at 56 GFLOP/s in place and at 74 from
  // copies of both operands with rows 16 floats further apart, the copies included; NN 256 ×
  // 512 × 512 at 62 in place and 90 with B copied (docs/PERFORMANCE.md, "Operands 2 KiB
  // apart"). Measured per case: a weight gradient (TN) gains from copies of both operands
  // (of one alone, only in some products), a backward-input product (NN) from a copy of B
  // only, a forward product (NT) from neither. The kernels and their order of sums do not
  // depend on the leading dimension, so the bits are those of the call in place
  // (Gemm.CopiedOperandsGiveTheBitsOfTheProductInPlace). M or N of 1 is a GEMV in oneDNN,
  // K of 0 has nothing to copy.
  if (!trans_b && M > 1 && N > 1 && K > 0 && onednn_runs_avx2() && onednn_avx2_no_copy(trans_a, M, N, K)) {
    thread_local CopyBuffer copy_a{kernels::BackendAllocator<float>(kernels::cpu_backend())},
        copy_b{kernels::BackendAllocator<float>(kernels::cpu_backend())};
    if (trans_a && lda % 512 == 0) A = padded_rows(A, K, M, lda, copy_a, &lda);
    if (ldb % 512 == 0) B = padded_rows(B, K, N, ldb, copy_b, &ldb);
  }
  const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B,
                                      ldb, beta, C, ldc);
  if (st != dnnl_success) {  // only bad arguments fail: a programming error
    std::fprintf(stderr, "%s:%d: dnnl_sgemm(%c, %c, M %d, N %d, K %d, lda %d, ldb %d, ldc %d) failed: status %d\n",
                 __FILE__, __LINE__, trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, lda, ldb, ldc, (int)st);
    std::abort();
  }
}

// [begin, end) of range t of k over n items, on multiples of kAlign (the last takes the rest).
void aligned_range(int n, int t, int k, int* begin, int* end) {
  const int blocks = (n + kAlign - 1) / kAlign;
  *begin = std::min(n, (int)((long)blocks * t / k) * kAlign);
  *end = t + 1 == k ? n : std::min(n, (int)((long)blocks * (t + 1) / k) * kAlign);
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  DUET_PROFILE("gemm");
  if (M == 0 || N == 0) return;
  if (K == 0) {  // C = beta · C: oneDNN 2.6 returns with C untouched whatever beta is
    for (int r = 0; r < M; ++r)
      for (int j = 0; j < N; ++j) C[(size_t)r * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)r * ldc + j];
    return;
  }
  int k = in_parallel() ? 1 : std::min(threads_for(M, N, K), usable_cpus());  // the parts parallel_run will give
  // Split C along its longer side: each thread then reads its share of the larger operand and
  // all of the smaller one, the least memory traffic of the two (a rows split reads all of B,
  // N·K, per thread; a columns split all of op(A), M·K). Splitting a short side costs: oneDNN's
  // AVX2 kernels, TN 512 × 1536 × 1024 on 2 threads, 98 GFLOP/s by rows vs 142 by columns
  // (docs/PERFORMANCE.md).
  const bool by_rows = M >= N;
  k = std::min(k, ((by_rows ? M : N) + kAlign - 1) / kAlign);
  if (k <= 1) {
    sgemm_one_thread(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  parallel_run(k, [&](int t, int parts) {
    int b, e;
    aligned_range(by_rows ? M : N, t, parts, &b, &e);
    if (b >= e) return;
    if (by_rows)  // rows b..e of op(A) and of C; op(A) = Aᵀ reads columns of A
      sgemm_one_thread(trans_a, trans_b, e - b, N, K, alpha, trans_a ? A + b : A + (size_t)b * lda, lda, B, ldb,
                       beta, C + (size_t)b * ldc, ldc);
    else  // columns b..e of op(B) and of C; op(B) = Bᵀ reads rows of B
      sgemm_one_thread(trans_a, trans_b, M, e - b, K, alpha, A, lda, trans_b ? B + (size_t)b * ldb : B + b, ldb,
                       beta, C + b, ldc);
  });
}

void linear_forward(float* out, const float* in, const float* w, int N, int I, int O, bool accumulate) {
  gemm(false, true, N, O, I, 1.0f, in, I, w, I, accumulate ? 1.0f : 0.0f, out, O);
}

void linear_backward_input(float* din, const float* dout, const float* w, int N, int I, int O,
                           bool accumulate) {
  gemm(false, false, N, I, O, 1.0f, dout, O, w, I, accumulate ? 1.0f : 0.0f, din, I);
}

void linear_backward_weight(float* dw, const float* dout, const float* in, int N, int I, int O) {
  if (N == 0) return;
  gemm(true, false, O, I, N, 1.0f, dout, O, in, I, 1.0f, dw, I);
}

namespace {

// The experts' products of a grouped linear op, whole groups per thread: with at least two
// non-empty groups per thread, each thread takes the next group (largest first) and computes
// its product alone, instead of every product being split across the threads. Threads then
// read different weights rather than sharing one operand, and no product pays a split; the
// bits are those of the one-thread run, whichever thread takes a group, since each group is
// one whole one-thread call with the arguments linear_* would pass cpu::gemm. The region's time
// is profiled on the calling thread. one_group(g, r0) computes group g, whose rows start at r0.
// False (nothing done) when it does not apply: the caller then loops over the groups itself.
template <class F>
bool groups_on_threads(const int* rows, int groups, double flops_per_row, F&& one_group) {
  const int most = std::min(gemm_threads(), usable_cpus());
  if (most <= 1 || in_parallel()) return false;  // one thread (a rank bound to a core): nothing to do
  std::vector<int> order;
  std::vector<long> first_row(groups);
  double flops = 0;
  long total_rows = 0, most_rows = 0;
  for (long g = 0, r0 = 0; g < groups; r0 += rows[g++]) {
    first_row[g] = r0;
    if (rows[g] > 0) order.push_back((int)g), flops += flops_per_row * rows[g];
    total_rows += std::max(rows[g], 0), most_rows = std::max<long>(most_rows, rows[g]);
  }
  // As many threads as the work is worth (kMinFlopsPerThread each), two groups per thread at
  // least, and no group larger than one thread's share: one expert with most of the rows would
  // leave the other threads idle, where splitting its product keeps them all busy.
  const int k = std::min(most, (int)(flops / kMinFlopsPerThread));
  if (k <= 1 || (int)order.size() < 2 * k || most_rows * k > total_rows) return false;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return rows[a] > rows[b]; });
  std::atomic<size_t> next{0};
  parallel_run(k, [&](int, int) {
    for (size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < order.size();)
      one_group(order[i], first_row[order[i]]);
  });
  return true;
}

}  // namespace

void grouped_linear_forward(float* out, const float* in, const float* const* w, const int* rows,
                            int groups, int I, int O) {
  DUET_PROFILE("gemm");  // the region's time, on the calling thread only (helpers open no scope)
  if (!groups_on_threads(rows, groups, 2.0 * I * O, [&](int g, long r0) {  // linear_forward's product
        sgemm_one_thread(false, true, rows[g], O, I, 1.0f, in + r0 * I, I, w[g], I, 0.0f, out + r0 * O, O);
      }))
    kernels::grouped_forward_by_group<&linear_forward>(out, in, w, rows, groups, I, O);
}

void grouped_linear_backward_input(float* din, const float* dout, const float* const* w,
                                   const int* rows, int groups, int I, int O) {
  DUET_PROFILE("gemm");
  if (!groups_on_threads(rows, groups, 2.0 * I * O, [&](int g, long r0) {  // linear_backward_input's
        sgemm_one_thread(false, false, rows[g], I, O, 1.0f, dout + r0 * O, O, w[g], I, 0.0f, din + r0 * I, I);
      }))
    kernels::grouped_backward_input_by_group<&linear_backward_input>(din, dout, w, rows, groups, I, O);
}

void grouped_linear_backward_weight(float* const* dw, const float* dout, const float* in,
                                    const int* rows, int groups, int I, int O) {
  DUET_PROFILE("gemm");
  if (!groups_on_threads(rows, groups, 2.0 * I * O, [&](int g, long r0) {  // linear_backward_weight's
        sgemm_one_thread(true, false, O, I, rows[g], 1.0f, dout + r0 * O, O, in + r0 * I, I, 1.0f, dw[g], I);
      }))
    kernels::grouped_backward_weight_by_group<&linear_backward_weight>(dw, dout, in, rows, groups, I, O);
}

void set_gemm_threads(int threads) {
  if (threads > 0) g_threads.store(threads, std::memory_order_relaxed);
}

long gemm_operand_copies() { return g_operand_copies.load(std::memory_order_relaxed); }

int gemm_threads() {
  const int set = g_threads.load(std::memory_order_relaxed);
  return set > 0 ? set : default_threads();
}

std::string gemm_library() {
  const dnnl_version_t* v = dnnl_version();
  const char* isa = "unknown ISA";
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: isa = "SSE4.1"; break;
    case dnnl_cpu_isa_avx: isa = "AVX"; break;
    case dnnl_cpu_isa_avx2: isa = "AVX2"; break;
    case dnnl_cpu_isa_avx2_vnni: isa = "AVX2 VNNI"; break;
    case dnnl_cpu_isa_avx512_core: isa = "AVX-512"; break;
    case dnnl_cpu_isa_avx512_core_vnni: isa = "AVX-512 VNNI"; break;
    case dnnl_cpu_isa_avx512_core_bf16: isa = "AVX-512 BF16"; break;
    case dnnl_cpu_isa_avx512_core_amx: isa = "AVX-512 AMX"; break;
    default: break;
  }
  char s[96];
  std::snprintf(s, sizeof s, "oneDNN %d.%d.%d sgemm, %s kernels", v->major, v->minor, v->patch, isa);
  return s;
}

}  // namespace duet::cpu
