// The GEMM's determinism promise (kernels/gemm.h): on one machine, at one thread count, the
// same product gives the same bits — however often it runs and from whichever thread, since
// the pipeline engine calls GEMMs from two executor threads.
#include <gtest/gtest.h>

#include <pthread.h>
#include <sched.h>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/peak.h"

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

// The peak is what the cores do while the probe's threads run on them, not how much of the
// machine the probe got: a thread that waits for a core must not read as a slow core. Two
// threads confined to one CPU take turns on it; each runs at the core's full rate while it runs,
// so together they read two cores' worth (a wall-clock rate reads one: what the old probe did,
// and why a probe taken on a busy machine halved every report's share of the peak).
TEST(FmaPeak, ThreadsWaitingForACoreDoNotReadAsASlowCore) {
  double one = 0, two = 0;
  std::thread probe([&] {
    cpu_set_t allowed, first;
    ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    int c = 0;
    while (!CPU_ISSET(c, &allowed)) ++c;
    CPU_ZERO(&first);
    CPU_SET(c, &first);
    ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof first, &first), 0);  // its threads inherit it
    one = cpu::measure_fma_peak(1, 0.002, 20).flops;
    two = cpu::measure_fma_peak(2, 0.002, 20).flops;
  });
  probe.join();
  ASSERT_GT(one, 0);
  EXPECT_GT(two / one, 1.5) << "one thread " << one * 1e-9 << " GFLOP/s, two on the same CPU " << two * 1e-9;
}
