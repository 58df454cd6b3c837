#pragma once
// The CPU backend's own compute threads: what splits a GEMM (kernels/cpu/gemm.cpp) and the
// other kernels (kernels/cpu/parallel.h) over the cores, instead of OpenMP.
//
// Why not OpenMP (docs/PERFORMANCE.md, issue 16): libgomp's idle threads spin a fixed count
// read once when the library loads. Spinning long is what a process with cores of its own
// wants (a sleeping helper takes a futex wake, tens of µs under a hypervisor, to start the
// next region); spinning long on cores shared with other busy processes stalls everyone (a
// two-thread run next to two busy processes trained no step in 12 s). No count chosen at
// start-up is right for both, and a process cannot know at start-up which case it runs in.
// These threads choose as they go: each measures, from the kernel's scheduler statistics,
// how long it was runnable but not running, and spins long only while that stays small.
//
// How long a thread spins decides when work runs, never what is computed: every caller
// splits its work into fixed ranges that depend on the thread count alone.
#include <cstdint>
#include <type_traits>

namespace duet::cpu {

// fn(t, k) for t = 0 .. k-1 — k capped at the number of CPUs the calling thread may run on
// (fn sees the capped k) — t = 0 on the calling thread and the others on the calling
// thread's own helpers (started on first use, k - 1 of them; each thread that calls has its own,
// as the pipeline engine's two executors do). Returns when every fn has returned. Inside fn,
// in_parallel() is true and a nested call runs fn(0, 1) on the calling thread. An exception
// out of fn ends the process (std::terminate), as it would out of an OpenMP region. In a
// process forked from one that used the pool, everything runs on the calling thread.
void parallel_run(int k, void (*fn)(void* ctx, int t, int k), void* ctx) noexcept;

template <class F>
void parallel_run(int k, F&& f) noexcept {
  using Fn = std::remove_reference_t<F>;
  parallel_run(
      k, [](void* ctx, int t, int k) { (*static_cast<Fn*>(ctx))(t, k); }, (void*)&f);
}

bool in_parallel();

// CPUs the calling thread may run on (its affinity mask when it first asks): the most parts a
// region has. A rank bound to one core gains nothing from a second thread there, and would pay a
// switch per region.
int usable_cpus();

// The calling thread will not start a region for a while (it hands the rank's compute over
// to another thread, or waits on the network): its helpers stop spinning and sleep now
// instead of holding cores the other thread's helpers need. No-op for a thread without helpers.
void park_compute_threads();

// How long an idle thread of this pool spins before it sleeps: kSpinLong while the threads
// find their cores free, kSpinShort while they spend more than kContendedShare of the time
// they want to run waiting for a core (measured over windows of kContentionWindow).
inline constexpr int64_t kSpinLongNs = 4'000'000;  // ~ libgomp's default (300,000 pauses)
inline constexpr int64_t kSpinShortNs = 30'000;    // ~ the GOMP_SPINCOUNT=2000 measured best with busy neighbours
inline constexpr double kContendedShare = 0.05;
inline constexpr int64_t kContentionWindowNs = 50'000'000;

struct PoolStats {
  int64_t regions = 0;        // parallel_run calls with k > 1, this thread's pool
  int64_t wakes = 0;          // helpers woken from sleep (a futex wake) rather than found spinning
  bool contended = false;     // the calling thread's latest judgement
};
PoolStats pool_stats();  // of the calling thread's pool (and its judgement, sampled now)

// Tests only: force the spin budget (ns) of every pool thread in the process; a negative
// value goes back to measuring.
void set_pool_spin_for_testing(int64_t ns);

}  // namespace duet::cpu
