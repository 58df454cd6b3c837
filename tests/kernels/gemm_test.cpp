// The GEMM's determinism promise (kernels/gemm.h): on one machine, at one thread count, the
// same product gives the same bits — however often it runs and from whichever thread, since
// the pipeline engine calls GEMMs from two executor threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/peak.h"
#include "tests/kernels/pin_cpu.h"

using namespace duet;

namespace {

struct Product {
  int M, N, K;
  std::vector<float> a, b;
  Product(int m, int n, int k) : M(m), N(n), K(k), a((size_t)m * k), b((size_t)k * n) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1, 1);
    for (auto& x : a) x = u(rng);
    for (auto& x : b) x = u(rng);
  }
  std::vector<float> run() const {  // C = A·B; K large enough for a library to split it
    std::vector<float> c((size_t)M * N);
    cpu::gemm(false, false, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N);
    return c;
  }
};

bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), sizeof(float) * x.size()) == 0;
}

}  // namespace

TEST(Gemm, ThreadCountIsTheSetting) {
  cpu::set_gemm_threads(2);
  EXPECT_EQ(cpu::gemm_threads(), 2);
  EXPECT_EQ(cpu::gemm_threads(), 2);
  cpu::set_gemm_threads(1);
  EXPECT_EQ(cpu::gemm_threads(), 1);
}

TEST(Gemm, SameBitsEveryRunAndFromAnyThread) {
  for (int threads : {1, 2}) {
    cpu::set_gemm_threads(threads);
    for (const auto& p : {Product(256, 192, 1024), Product(64, 160, 32), Product(33, 17, 999)}) {
      const auto ref = p.run();
      for (int i = 0; i < 3; ++i) EXPECT_TRUE(same_bits(p.run(), ref)) << threads << " threads, M " << p.M;
      std::vector<float> c0, c1;
      std::thread t0([&] { c0 = p.run(); }), t1([&] { c1 = p.run(); });  // two executors at once
      t0.join(), t1.join();
      EXPECT_TRUE(same_bits(c0, ref)) << threads << " threads, M " << p.M;
      EXPECT_TRUE(same_bits(c1, ref)) << threads << " threads, M " << p.M;
    }
  }
  cpu::set_gemm_threads(1);
}

TEST(Gemm, NamesItsLibrary) { EXPECT_NE(cpu::gemm_library().find("oneDNN"), std::string::npos); }

TEST(FmaPeak, MeasuresTheWidestIsa) {
  const cpu::FmaPeak p = cpu::measure_fma_peak(1, 0.005, 2);
  EXPECT_GT(p.flops, 1e9);  // any x86 core with SSE2 does more than 1 GFLOP/s
  EXPECT_EQ(p.threads, 1);
  EXPECT_STREQ(p.isa, cpu::widest_fma_isa());
}

namespace {

// Runs f on a new thread confined to the first CPU this process may use (threads it starts
// inherit that).
template <class F>
void on_first_cpu(F&& f) {
  std::thread t([&] {
    test::pin_to_first_cpu();
    if (!::testing::Test::HasFatalFailure()) f();
  });
  t.join();
}

}  // namespace

// The peak is what a core does while the probe runs on it, not how much of the machine the
// probe got: a thread that shares its core with a busy process must not read as a slow core.
// Windows of 50 ms, longer than any scheduler slice, so that every one is shared: a wall-clock
// rate (the old probe, and why a probe taken on a busy machine halved the run log's share of
// the peak) reads about half, every time. Up to five tries: on a VM the host can slow the CPU
// itself for a while (docs/PERFORMANCE.md), which no probe can tell from a slow core.
TEST(FmaPeak, AThreadThatWaitsForItsCoreDoesNotReadAsASlowCore) {
  double best = 0, alone = 0, shared = 0;
  for (int attempt = 0; attempt < 5 && best <= 0.8; ++attempt) {
    on_first_cpu([&] {
      alone = cpu::measure_fma_peak(1, 0.05, 3).flops;
      std::atomic<bool> stop{false};
      std::thread busy([&] {  // on the same CPU
        while (!stop.load(std::memory_order_relaxed)) {}
      });
      shared = cpu::measure_fma_peak(1, 0.05, 3).flops;
      stop = true;
      busy.join();
    });
    ASSERT_GT(alone, 0);
    best = std::max(best, shared / alone);
  }
  EXPECT_GT(best, 0.8) << "last try: alone " << alone * 1e-9 << " GFLOP/s, sharing the CPU " << shared * 1e-9;
}

// Threads beyond the CPUs the caller may use would only take turns: the probe never counts
// more cores than it can run on.
TEST(FmaPeak, NeverMoreThreadsThanCpusToRunOn) {
  cpu::FmaPeak two;
  on_first_cpu([&] { two = cpu::measure_fma_peak(2, 0.002, 20); });
  EXPECT_EQ(two.threads, 1);
  EXPECT_GT(two.flops, 0);
}
