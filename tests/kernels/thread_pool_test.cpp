// The CPU backend's compute threads (kernels/cpu/thread_pool.h) and the GEMM split on them
// (kernels/cpu/gemm.cpp): every part runs once, on the right thread, whether the helpers
// spin or sleep, from two calling threads at once; nested calls run inline; a thread that
// shares its core with a busy one says so; a split product equals the one-thread product.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/gemm.h"
#include "tests/kernels/pin_cpu.h"

using namespace duet;

namespace {

int usable_cpus() {
  cpu_set_t set;
  return sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
}

// Runs `regions` regions of k parts (at most one per usable CPU) and checks each part ran
// exactly once per region, part 0 on the calling thread and the others elsewhere.
void run_regions(int want, int regions) {
  const int k = std::min(want, usable_cpus());
  const auto caller = std::this_thread::get_id();
  std::vector<std::atomic<int>> ran(k);
  std::atomic<int> wrong_thread{0}, wrong_k{0}, not_inside{0};
  for (int r = 0; r < regions; ++r) {
    cpu::parallel_run(k, [&](int t, int parts) {
      ran[t].fetch_add(1);
      if (parts != k) wrong_k.fetch_add(1);
      if ((t == 0) != (std::this_thread::get_id() == caller)) wrong_thread.fetch_add(1);
      if (!cpu::in_parallel()) not_inside.fetch_add(1);
    });
  }
  for (int t = 0; t < k; ++t) EXPECT_EQ(ran[t].load(), regions) << "part " << t << " of " << k;
  EXPECT_EQ(wrong_thread.load(), 0);
  EXPECT_EQ(wrong_k.load(), 0);
  EXPECT_EQ(not_inside.load(), 0);
  EXPECT_FALSE(cpu::in_parallel());
}

using duet::test::pin_to_first_cpu;

std::vector<float> rnd(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

}  // namespace

// Tests of helpers need two CPUs; with one, a region runs on the calling thread alone.
#define NEED_TWO_CPUS() \
  if (usable_cpus() < 2) GTEST_SKIP() << "this process may run on one CPU only: no helpers"

TEST(ThreadPool, EveryPartRunsOnceWhetherHelpersSpinOrSleep) {
  NEED_TWO_CPUS();
  for (int64_t spin : {(int64_t)0, cpu::kSpinLongNs, (int64_t)-1}) {
    cpu::set_pool_spin_for_testing(spin);
    const int64_t wakes_before = cpu::pool_stats().wakes;
    // Forced long spinning on a busy machine costs a scheduler slice per region: fewer there.
    const int regions = spin == cpu::kSpinLongNs ? 200 : 2000;
    run_regions(2, regions);
    run_regions(3, regions / 4);
    if (spin == 0)  // a helper that never spins sleeps: regions had to wake it
      EXPECT_GT(cpu::pool_stats().wakes - wakes_before, 0);
  }
  cpu::set_pool_spin_for_testing(-1);
}

TEST(ThreadPool, TwoCallersHaveTheirOwnHelpers) {
  NEED_TWO_CPUS();
  cpu::set_pool_spin_for_testing(0);  // the sleeping path, where a lost wake-up would hang
  std::thread a([] { run_regions(2, 3000); }), b([] { run_regions(2, 3000); });
  a.join(), b.join();
  cpu::set_pool_spin_for_testing(-1);
}

TEST(ThreadPool, ANestedRegionRunsOnTheCallingThread) {
  NEED_TWO_CPUS();
  std::atomic<int> inner{0}, inner_elsewhere{0};
  cpu::parallel_run(2, [&](int, int) {
    const auto self = std::this_thread::get_id();
    cpu::parallel_run(2, [&](int t, int parts) {
      inner.fetch_add(1);
      if (t != 0 || parts != 1 || std::this_thread::get_id() != self) inner_elsewhere.fetch_add(1);
    });
  });
  EXPECT_EQ(inner.load(), 2);
  EXPECT_EQ(inner_elsewhere.load(), 0);
}

TEST(ThreadPool, AThreadSharingItsCoreWithABusyOneSaysItIsContended) {
  // This thread and a busy one on the same CPU: each runs about half the time it wants and
  // waits for the core the other half, far above kContendedShare.
  std::thread test([] {
    pin_to_first_cpu();
    std::atomic<bool> stop{false};
    std::thread busy([&] {
      pin_to_first_cpu();
      while (!stop.load(std::memory_order_relaxed)) {
      }
    });
    const auto start = std::chrono::steady_clock::now();
    volatile double x = 0;
    // Several windows of wall time, sampled all along.
    while (std::chrono::steady_clock::now() - start < std::chrono::nanoseconds(4 * cpu::kContentionWindowNs)) {
      for (int i = 0; i < 20000; ++i) x = x + 1.0;
      (void)cpu::pool_stats();
    }
    stop = true;
    busy.join();
    EXPECT_TRUE(cpu::pool_stats().contended);
  });
  test.join();
}

TEST(ThreadPool, ASplitProductEqualsTheOneThreadProduct) {
  // Shapes that split by rows (more rows than columns), by columns (more columns) and ones too
  // small or ragged to split evenly; every transpose combination (the model's NT, NN, TN).
  // At 2 and 3 threads (3: a middle range), checking that the product was split.
  struct S { int M, N, K; };
  for (const S s : {S{1000, 96, 300}, S{16, 4100, 256}, S{45, 700, 300}, S{257, 1025, 64}}) {
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const auto a = rnd((size_t)s.M * s.K, 1), b = rnd((size_t)s.K * s.N, 2), c0 = rnd((size_t)s.M * s.N, 3);
        const int lda = ta ? s.M : s.K, ldb = tb ? s.K : s.N;
        std::vector<float> c[3] = {c0, c0, c0};
        for (int threads : {1, 2, 3}) {
          cpu::set_gemm_threads(threads);
          const int64_t regions = cpu::pool_stats().regions;
          cpu::gemm(ta, tb, s.M, s.N, s.K, 0.5f, a.data(), lda, b.data(), ldb, 1.0f, c[threads - 1].data(), s.N);
          EXPECT_EQ(cpu::pool_stats().regions - regions, std::min(threads, usable_cpus()) > 1 ? 1 : 0)
              << s.M << "x" << s.N << "x" << s.K;
        }
        cpu::set_gemm_threads(1);
        for (int split : {1, 2}) {
          double worst = 0;
          for (size_t i = 0; i < c0.size(); ++i) worst = std::max(worst, (double)std::fabs(c[0][i] - c[split][i]));
          EXPECT_LT(worst, 1e-4) << s.M << "x" << s.N << "x" << s.K << " ta " << ta << " tb " << tb << ", "
                                 << split + 1 << " threads";
        }
      }
  }
}

TEST(ThreadPool, ExpertsOnTheirOwnThreadsGiveTheOneThreadBitsInOneRegion) {
  NEED_TWO_CPUS();
  // A grouped op with at least two non-empty groups per thread runs whole groups per thread
  // (one region for the op), each one a one-thread product: the same bits as at one thread.
  // With fewer groups, or one group larger than a thread's share of the rows, each product
  // worth splitting is split as a plain GEMM (one region per product).
  const int I = 64, O = 96;
  for (const std::vector<int> rows : {std::vector<int>{120, 0, 95, 130, 64, 77, 101, 88, 50},  // 4+ per thread
                                      std::vector<int>{1400, 0, 1300},                        // too few groups
                                      std::vector<int>{3000, 10, 10, 10, 2900}}) {            // one too large
    const int groups = (int)rows.size();
    long R = 0;
    for (int r : rows) R += r;
    const auto in = rnd((size_t)R * I, 1), dout = rnd((size_t)R * O, 2);
    std::vector<std::vector<float>> w, dw[2];
    for (int g = 0; g < groups; ++g) w.push_back(rnd((size_t)O * I, 10 + g));
    std::vector<const float*> wp;
    for (auto& x : w) wp.push_back(x.data());
    std::vector<float> out[2], din[2];
    int64_t regions[2] = {0, 0};
    for (int threads : {1, 2}) {
      const int t = threads - 1;
      cpu::set_gemm_threads(threads);
      out[t].assign((size_t)R * O, 0.0f), din[t].assign((size_t)R * I, 0.0f);
      for (int g = 0; g < groups; ++g) dw[t].push_back(rnd((size_t)O * I, 30 + g));  // accumulated into
      std::vector<float*> dwp;
      for (auto& x : dw[t]) dwp.push_back(x.data());
      const int64_t r0 = cpu::pool_stats().regions;
      cpu::grouped_linear_forward(out[t].data(), in.data(), wp.data(), rows.data(), groups, I, O);
      cpu::grouped_linear_backward_input(din[t].data(), dout.data(), wp.data(), rows.data(), groups, I, O);
      cpu::grouped_linear_backward_weight(dwp.data(), dout.data(), in.data(), rows.data(), groups, I, O);
      regions[t] = cpu::pool_stats().regions - r0;
    }
    cpu::set_gemm_threads(1);
    EXPECT_EQ(regions[0], 0);
    if (rows.size() == 9) {
      EXPECT_EQ(regions[1], 3) << "one region per grouped op";
      EXPECT_EQ(out[1], out[0]);
      EXPECT_EQ(din[1], din[0]);
      EXPECT_EQ(dw[1], dw[0]);
    } else {
      EXPECT_EQ(regions[1], 6) << "each of the 2 large products split, in each of the 3 ops";
      for (size_t i = 0; i < out[0].size(); ++i) ASSERT_NEAR(out[1][i], out[0][i], 1e-4);
      for (size_t i = 0; i < din[0].size(); ++i) ASSERT_NEAR(din[1][i], din[0][i], 1e-4);
      for (int g = 0; g < groups; ++g)
        for (size_t i = 0; i < dw[0][g].size(); ++i) ASSERT_NEAR(dw[1][g][i], dw[0][g][i], 1e-4);
    }
  }
}

TEST(ThreadPool, TheGemmLibraryStartsNoThreadsOfItsOwn) {
  NEED_TWO_CPUS();
  // oneDNN runs on OpenMP; were it asked for more than one thread, libgomp would start
  // workers that spin by its own fixed rule. A split product must add only the pool's helper.
  auto tasks = [] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) n += !e.path().empty();
    return n;
  };
  const int before = tasks();
  int during = 0;
  std::thread caller([&] {
    cpu::set_gemm_threads(2);
    const int n = 512;
    const auto a = rnd((size_t)n * n, 1), b = rnd((size_t)n * n, 2);
    std::vector<float> c((size_t)n * n);
    for (int i = 0; i < 3; ++i) cpu::gemm(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    cpu::set_gemm_threads(1);
    during = tasks();
  });
  caller.join();
  // The calling thread and its one helper (a thread joined just before may still be listed in
  // `before`: at most, not exactly).
  EXPECT_LE(during, before + 2);
}

TEST(ThreadPool, ParkedHelpersSleepAtOnce) {
  NEED_TWO_CPUS();
  // With a long spin forced, a helper parked right after a region is asleep for the next one:
  // that region has to wake it. Unparked, it is still spinning.
  cpu::set_pool_spin_for_testing(cpu::kSpinLongNs);
  run_regions(2, 1);  // the helper exists
  int64_t woken_parked = 0;
  for (int i = 0; i < 200; ++i) {
    cpu::park_compute_threads();
    // Whether the helper has reached its sleep before the next region is up to the scheduler;
    // over 200 tries at least one must find it asleep.
    const int64_t w = cpu::pool_stats().wakes;
    std::this_thread::yield();
    run_regions(2, 1);
    woken_parked += cpu::pool_stats().wakes - w;
  }
  cpu::set_pool_spin_for_testing(-1);
  EXPECT_GT(woken_parked, 0);
}

TEST(ThreadPool, AThreadBoundToOneCpuRunsRegionsItself) {
  // A rank bound to one core (duet launch's default binding): helpers would only take turns
  // with the caller on that core, so there are none.
  std::thread bound([] {
    pin_to_first_cpu();
    const auto self = std::this_thread::get_id();
    int parts_seen = 0, elsewhere = 0;
    cpu::parallel_run(2, [&](int, int parts) {
      parts_seen = parts;
      if (std::this_thread::get_id() != self) ++elsewhere;
    });
    EXPECT_EQ(parts_seen, 1);
    EXPECT_EQ(elsewhere, 0);
    EXPECT_TRUE(cpu::in_parallel() == false);
    EXPECT_EQ(cpu::pool_stats().regions, 0);
  });
  bound.join();
}
