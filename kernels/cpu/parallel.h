#pragma once
// Splitting the non-GEMM kernels over the compute threads (the GEMM's setting, kernels/gemm.h),
// so that a second core helps the whole step and not only its GEMMs.
//
// Deterministic by construction: the work is split into contiguous static ranges of
// independent items (rows, heads, columns of a reduction), each item is computed by the same
// code whichever thread takes it, and no sum crosses a range boundary — so results are
// bit-identical for any thread count, not only for a given one. Reductions over items (the
// loss, gradient norms) are left to the caller in their serial order.
//
// Kernels compiled per ISA (isa_clones.h) keep their clones on the per-range function and call
// it from here, so that the ranges run the clone the loader chose.
#include <algorithm>

#include "kernels/cpu/thread_pool.h"
#include "kernels/gemm.h"

namespace duet::cpu {

// Threads worth using for `work` (~ elements touched) when each thread should get at least
// kMinWorkPerThread of it: a fork and join costs a few µs, ~16K elements take ~5–10 µs.
// One inside a parallel region (the caller already splits).
inline int parallel_threads(double work) {
  constexpr double kMinWorkPerThread = 16384;
  if (in_parallel()) return 1;
  const int set = gemm_threads();
  return std::max(1, std::min(set, (int)(work / kMinWorkPerThread)));
}

// f(begin, end) over [0, n) in contiguous ranges, one per thread; `work_per_item` sizes the
// split (parallel_threads).
template <class F>
void parallel_ranges(long n, double work_per_item, F&& f) {
  const int nt = n > 1 ? std::min<long>(n, parallel_threads(work_per_item * n)) : 1;
  if (nt <= 1) {
    f(0L, n);
    return;
  }
  parallel_run((int)nt, [&](int t, int k) {
    const long begin = n * t / k, end = n * (t + 1) / k;
    if (begin < end) f(begin, end);
  });
}

}  // namespace duet::cpu
