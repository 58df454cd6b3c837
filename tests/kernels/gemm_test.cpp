// The GEMM's determinism promise (kernels/gemm.h): on one machine, at one thread count, the
// same product gives the same bits — however often it runs and from whichever thread, since
// the pipeline engine calls GEMMs from two executor threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
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

namespace {

// rows × cols values of a seeded generator, rows `ld` floats apart, NaN between them: a
// product that reads outside its operand shows NaN.
std::vector<float> strided(int rows, int cols, int ld, unsigned seed) {
  std::vector<float> v((size_t)rows * ld, std::nanf(""));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) v[(size_t)r * ld + c] = u(rng);
  return v;
}

}  // namespace

// Operands whose rows are a multiple of 512 floats apart are copied to rows 16 floats further
// apart before oneDNN's AVX2 no-copy kernels run (kernels/cpu/gemm.cpp): a speed change only,
// the bits must be those of the same values stored at a leading dimension that is not copied.
// The copies' rows are 64-byte aligned, which oneDNN's kernels read in place; the odd leading
// dimensions are not, which they repack as they go: both of its paths are compared.
TEST(Gemm, CopiedOperandsGiveTheBitsOfTheProductInPlace) {
  const std::string lib = cpu::gemm_library();
  if (lib.find("AVX2") == std::string::npos && lib.find(" AVX kernels") == std::string::npos)
    GTEST_SKIP() << lib << ": operands are copied for oneDNN's AVX and AVX2 kernels only; ctest runs this "
                 << "case again under ONEDNN_MAX_CPU_ISA=AVX2 (tests/CMakeLists.txt)";
  struct Case {
    bool trans_a;
    int M, N, K, lda, ldb;
    long copies;  // operands copied by one one-thread call
  };
  const Case cases[] = {
      {true, 512, 512, 1024, 512, 512, 2},  // a weight gradient (TN): both operands
      {true, 256, 512, 300, 256, 512, 1},   // A's rows 1 KiB apart are left alone
      {true, 37, 300, 77, 512, 1024, 2},    // parts of wider rows, sizes off 16
      {false, 256, 512, 512, 512, 512, 1},  // a backward-input product (NN): B only
      {false, 100, 200, 64, 64, 1024, 1},
  };
  for (int threads : {1, 2}) {
    cpu::set_gemm_threads(threads);
    for (const Case& c : cases) {
      const int a_rows = c.trans_a ? c.K : c.M, a_cols = c.trans_a ? c.M : c.K, ldc = c.N + 5;
      // The same values at leading dimensions a copy is never made for (cols + 3: odd).
      const auto a = strided(a_rows, a_cols, c.lda, 1), b = strided(c.K, c.N, c.ldb, 2);
      const auto a_odd = strided(a_rows, a_cols, a_cols + 3, 1), b_odd = strided(c.K, c.N, c.N + 3, 2);
      std::vector<float> want = strided(c.M, c.N, ldc, 3), got = want;
      const long before = cpu::gemm_operand_copies();
      cpu::gemm(c.trans_a, false, c.M, c.N, c.K, 0.75f, a_odd.data(), a_cols + 3, b_odd.data(), c.N + 3, 1.0f,
                want.data(), ldc);
      EXPECT_EQ(cpu::gemm_operand_copies(), before) << "copied an operand at an odd leading dimension";
      cpu::gemm(c.trans_a, false, c.M, c.N, c.K, 0.75f, a.data(), c.lda, b.data(), c.ldb, 1.0f, got.data(), ldc);
      const long copies = cpu::gemm_operand_copies() - before;
      const std::string what = std::string(c.trans_a ? "TN " : "NN ") + std::to_string(c.M) + " x " +
                               std::to_string(c.N) + " x " + std::to_string(c.K) + ", " + std::to_string(threads) +
                               " thread(s)";
      if (threads == 1)
        EXPECT_EQ(copies, c.copies) << what;
      else
        EXPECT_GE(copies, c.copies) << what;  // each part of a split product copies its own operands
      for (int r = 0; r < c.M; ++r)
        for (int j = 0; j < c.N; ++j) ASSERT_FALSE(std::isnan(got[(size_t)r * ldc + j])) << what;
      EXPECT_TRUE(same_bits(got, want)) << what;
    }
  }
  cpu::set_gemm_threads(1);
  // Nothing to copy: K = 0 (gemm's own empty sum) and a one-row product (a GEMV in oneDNN).
  const auto a = strided(1024, 512, 512, 4), b = strided(1024, 512, 512, 5);
  std::vector<float> c(512 * 512, 2.0f);
  const long before = cpu::gemm_operand_copies();
  cpu::gemm(true, false, 512, 512, 0, 1.0f, a.data(), 512, b.data(), 512, 1.0f, c.data(), 512);
  EXPECT_EQ(c.back(), 2.0f);
  cpu::gemm(true, false, 1, 512, 1024, 1.0f, a.data(), 512, b.data(), 512, 0.0f, c.data(), 512);
  EXPECT_FALSE(std::isnan(c[511]));
  EXPECT_EQ(cpu::gemm_operand_copies(), before);
}

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

// An empty sum: C = beta · C, as BLAS defines it (oneDNN 2.6 alone leaves C as it was).
TEST(Gemm, AProductOverNothingScalesCByBeta) {
  // C is 2 × 3 in rows 4 apart; the fourth column is not C's and must keep its sentinel.
  const float sentinel = -7.0f;
  std::vector<float> a(4), b(4), c(8, 2.0f);
  c[3] = c[7] = sentinel;
  cpu::gemm(false, false, 2, 3, 0, 1.0f, a.data(), 1, b.data(), 3, 0.5f, c.data(), 4);
  for (int i : {0, 1, 2, 4, 5, 6}) EXPECT_EQ(c[i], 1.0f) << i;
  std::fill(c.begin(), c.end(), std::nanf(""));
  c[3] = c[7] = sentinel;
  cpu::gemm(true, false, 2, 3, 0, 1.0f, a.data(), 2, b.data(), 3, 0.0f, c.data(), 4);  // beta 0: NaN gone
  for (int i : {0, 1, 2, 4, 5, 6}) EXPECT_EQ(c[i], 0.0f) << i;
  EXPECT_EQ(c[3], sentinel);
  EXPECT_EQ(c[7], sentinel);
}
