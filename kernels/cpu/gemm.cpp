#include "kernels/gemm.h"
#include "kernels/profile.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

// SGEMM is oneDNN's (docs/PERFORMANCE.md, "CPU GEMM": measured against OpenBLAS on the model's
// shapes). oneDNN picks its kernels from the CPU's feature flags (AVX-512, AVX2, …), not from
// a table of CPU models, so a CPU newer than the library still gets its widest kernels;
// OpenBLAS 0.3.21 falls back to generic SSE kernels on a model it does not know.
//
// Threads: Debian's oneDNN runs on OpenMP, and reads the thread count from the calling
// thread's OpenMP setting (omp_get_max_threads). The model calls GEMMs from more than one
// thread (the pipeline engine's two executors), so every calling thread applies the count
// set here before its next GEMM. Small products run on fewer threads (kMinFlopsPerThread): an
// OpenMP fork and join costs more than they take, and on a busy machine a helper thread that
// is not scheduled stalls the whole call. The count is a function of the shape and the
// setting only, and for a given CPU and count oneDNN partitions the work the same way every
// time, so results are bit-identical run to run. Kernels that split work themselves
// (kernels/cpu/parallel.h) call gemm() from inside a parallel region: one thread per product.

namespace duet::cpu {

namespace {

std::atomic<int> g_threads{0};  // 0: not set, oneDNN's default (OMP_NUM_THREADS or all CPUs)
thread_local int t_applied = 0;

// 2·M·N·K per thread at least: ~25 µs of work on one AVX-512 core.
constexpr double kMinFlopsPerThread = 4e6;

void apply_threads(int want) {
  if (want > 0 && want != t_applied) {
    omp_set_num_threads(want);
    t_applied = want;
  }
}

int threads_for(int M, int N, int K) {
  const int set = g_threads.load(std::memory_order_relaxed);
  if (set <= 1) return set;
  const double flops = 2.0 * M * N * K;
  return std::max(1, std::min(set, (int)(flops / kMinFlopsPerThread)));
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  DUET_PROFILE("gemm");
  if (M == 0 || N == 0) return;
  // Inside a parallel region (attention splits over heads) oneDNN runs on the calling thread
  // alone; setting a count there would only desynchronise t_applied from the thread's ICV.
  if (!omp_in_parallel()) apply_threads(threads_for(M, N, K));
  const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B,
                                      ldb, beta, C, ldc);
  if (st != dnnl_success) {  // only bad arguments fail: a programming error
    std::fprintf(stderr, "%s:%d: dnnl_sgemm(%c, %c, M %d, N %d, K %d, lda %d, ldb %d, ldc %d) failed: status %d\n",
                 __FILE__, __LINE__, trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, lda, ldb, ldc, (int)st);
    std::abort();
  }
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
  if (threads > 0) g_threads.store(threads, std::memory_order_relaxed);
}

int gemm_threads() {
  const int set = g_threads.load(std::memory_order_relaxed);
  return set > 0 ? set : omp_get_max_threads();
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
