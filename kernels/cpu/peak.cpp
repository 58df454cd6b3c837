#include "kernels/peak.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <thread>
#include <vector>

#include "kernels/cpu/thread_pool.h"

// The loops keep enough independent accumulators in registers to cover the FMA latency on
// every FMA port (4 cycles × 2 ports = 8 in flight on current Intel and AMD cores): 16 for
// AVX-512 (32 registers), 12 for AVX2 (16 registers). The binary is built for a baseline
// x86-64, so each loop is compiled for its own ISA (function target attributes) and only
// called when the CPU has it.

namespace duet::cpu {

namespace {

using Clock = std::chrono::steady_clock;

#define DUET_REP16(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define DUET_REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

// Each returns the FLOPs it did; `sink` keeps the results alive.
__attribute__((target("avx512f"))) double fma_loop_avx512(long iters, float* sink) {
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
#define DECL(i) __m512 a##i = _mm512_set1_ps(1.0f + (i));
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, b, c);
#define SUM(i) s = _mm512_add_ps(s, a##i);
  DUET_REP16(DECL)
  for (long n = 0; n < iters; ++n) { DUET_REP16(STEP) }
  __m512 s = _mm512_setzero_ps();
  DUET_REP16(SUM)
  float v[16];
  _mm512_storeu_ps(v, s);
  for (float x : v) *sink += x;
#undef DECL
#undef STEP
#undef SUM
  return 16.0 * 16 * 2 * iters;
}

__attribute__((target("avx2,fma"))) double fma_loop_avx2(long iters, float* sink) {
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
#define DECL(i) __m256 a##i = _mm256_set1_ps(1.0f + (i));
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, b, c);
#define SUM(i) s = _mm256_add_ps(s, a##i);
  DUET_REP12(DECL)
  for (long n = 0; n < iters; ++n) { DUET_REP12(STEP) }
  __m256 s = _mm256_setzero_ps();
  DUET_REP12(SUM)
  float v[8];
  _mm256_storeu_ps(v, s);
  for (float x : v) *sink += x;
#undef DECL
#undef STEP
#undef SUM
  return 12.0 * 8 * 2 * iters;
}

double fma_loop_sse2(long iters, float* sink) {  // no FMA: a multiply and an add per lane
  const __m128 b = _mm_set1_ps(0.999999f), c = _mm_set1_ps(1e-7f);
#define DECL(i) __m128 a##i = _mm_set1_ps(1.0f + (i));
#define STEP(i) a##i = _mm_add_ps(_mm_mul_ps(a##i, b), c);
#define SUM(i) s = _mm_add_ps(s, a##i);
  DUET_REP12(DECL)
  for (long n = 0; n < iters; ++n) { DUET_REP12(STEP) }
  __m128 s = _mm_setzero_ps();
  DUET_REP12(SUM)
  float v[4];
  _mm_storeu_ps(v, s);
  for (float x : v) *sink += x;
#undef DECL
#undef STEP
#undef SUM
  return 12.0 * 4 * 2 * iters;
}

using Loop = double (*)(long, float*);

Loop widest_loop() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return fma_loop_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return fma_loop_avx2;
  return fma_loop_sse2;
}

// The CPU time the calling thread has run, in seconds: the time it was on a CPU, not the time
// it waited for one (or, under a hypervisor that reports steal time, for its vCPU).
double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// All threads start together and run until the first of them has done `iters` iterations (in
// chunks, so that the others stop at once too): every thread spans the same window, whatever
// its core's speed. The result is the rate of what the threads' cores do while the threads run
// on them:
// - One thread: its FLOPs over its CPU time. A wall-clock rate would count the time it waited
//   for a core (a build still finishing, another job) as time the core was slow.
// - Several: the sum of those rates, but only when every thread ran at least kOverlap of the
//   window, so that they ran at the same time (the sum may then read up to 1/kOverlap high,
//   ~11%, and the best of many prefers that). Two hyperthreads of
//   one core running at once each run at half speed and sum to one core's rate (the test for
//   real cores); one of them alone, its sibling waiting, runs at full speed, and a sum of
//   CPU-time rates would read two cores. Otherwise the FLOPs over the window's wall time: low,
//   and left to the caller's best-of.
double run_threads(Loop loop, int threads, long iters) {
  constexpr double kOverlap = 0.9;
  constexpr long kChunks = 32;
  const long chunk = std::max(1L, iters / kChunks);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false}, stop{false};
  std::vector<float> sinks(threads * 16, 0.0f);  // a cache line each
  struct Ran {
    Clock::time_point begin, end;
    double flops = 0, cpu_s = 0;
  };
  std::vector<Ran> ran(threads);
  auto run = [&](int t) {
    Ran& r = ran[t];
    r.begin = Clock::now();
    const double c0 = thread_cpu_seconds();
    for (long done = 0; done < iters && !stop.load(std::memory_order_relaxed); done += chunk)
      r.flops += loop(chunk, &sinks[t * 16]);
    stop.store(true, std::memory_order_relaxed);
    r.cpu_s = std::max(thread_cpu_seconds() - c0, 1e-9);
    r.end = Clock::now();
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {}
      run(t);
    });
  while (ready.load() < threads - 1) std::this_thread::yield();
  go.store(true, std::memory_order_release);
  run(0);
  for (auto& th : pool) th.join();
  auto begin = ran[0].begin, end = ran[0].end;
  for (const Ran& r : ran) begin = std::min(begin, r.begin), end = std::max(end, r.end);
  const double window = std::max(std::chrono::duration<double>(end - begin).count(), 1e-9);
  double rates = 0, flops = 0;
  bool together = true;
  for (const Ran& r : ran) {
    rates += r.flops / r.cpu_s, flops += r.flops;
    together = together && r.cpu_s >= kOverlap * window;
  }
  return threads == 1 || together ? rates : flops / window;
}

}  // namespace

const char* widest_fma_isa() {
  const Loop l = widest_loop();
  return l == fma_loop_avx512 ? "AVX-512" : l == fma_loop_avx2 ? "AVX2" : "SSE2";
}

FmaPeak measure_fma_peak(int threads, double seconds, int repeats) {
  threads = std::clamp(threads, 1, usable_cpus());  // the CPUs this thread may run on
  const Loop loop = widest_loop();
  float sink = 0;
  // Calibrate on one thread (this also brings the core to its vector clock).
  long iters = 1 << 14;
  for (;;) {
    const auto t0 = Clock::now();
    loop(iters, &sink);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s > seconds / 4 || iters > (1L << 40)) {
      iters = (long)(iters * seconds / std::max(s, 1e-9));
      break;
    }
    iters *= 4;
  }
  auto best_of = [&](int t, int n) {
    double best = 0;
    for (int r = 0; r < std::max(1, n); ++r) best = std::max(best, run_threads(loop, t, iters));
    return best;
  };
  FmaPeak p;
  p.isa = widest_fma_isa();
  p.threads = threads;
  p.flops = best_of(threads, repeats);
  // Under a hypervisor, threads on separate vCPUs can share one core's FMA units for a while.
  // On a 2-vCPU Zen 3 VM, 200 probes of ~93 ms with two threads: one in ten read under 1.45
  // cores, the lowest one core, in spells of 0.5-1.3 s, with no steal time counted and each
  // thread on its vCPU the whole time (docs/PERFORMANCE.md). Threads below kSharedShare of
  // their number times one thread's rate probe again, a pause apart, for up to kRetrySeconds:
  // a spell passes. (A spell reads ~0.5 of it. Real cores all at once read more than 0.85 even
  // at their lower all-core clock: two threads on a busy Ice Lake Xeon, 1.79x one. Two
  // hyperthreads of one core stay at ~0.5 and spend that time.)
  constexpr double kSharedShare = 0.85, kRetrySeconds = 1.5;
  if (threads > 1) {
    const double one = best_of(1, repeats / 5);
    const auto give_up = Clock::now() + std::chrono::duration<double>(kRetrySeconds);
    while (p.flops < kSharedShare * threads * one && Clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      p.flops = std::max(p.flops, best_of(threads, repeats));
    }
  }
  return p;
}

}  // namespace duet::cpu
