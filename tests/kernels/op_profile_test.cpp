// kernels::op_profiled: the wrapped table computes exactly what its base does, counts nothing
// while off, and while on gives each op it ran its calls and time.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/op_profile.h"

using duet::kernels::Backend;

namespace {

// A 64×64·64×64 GEMM and an RMSNorm through `b`; the outputs.
std::vector<float> run_ops(const Backend& b) {
  const int n = 64;
  std::vector<float> a(n * n), w(n * n), c(n * n), norm(n * n), rstd(n), weight(n, 1.5f);
  for (int i = 0; i < n * n; ++i) a[i] = 0.01f * (i % 97), w[i] = 0.02f * (i % 89) - 0.5f;
  b.gemm(false, true, n, n, n, 1.0f, a.data(), n, w.data(), n, 0.0f, c.data(), n);
  b.gemm(false, false, n, n, n, 1.0f, a.data(), n, w.data(), n, 1.0f, c.data(), n);
  b.rmsnorm_forward(norm.data(), rstd.data(), c.data(), weight.data(), n, n, 1e-5f);
  c.insert(c.end(), norm.begin(), norm.end());
  return c;
}

}  // namespace

TEST(OpProfile, WrapsEveryOpAndCountsOnlyWhileOn) {
  const Backend& cpu = duet::kernels::cpu_backend();
  const Backend& profiled = duet::kernels::op_profiled(cpu);
  EXPECT_EQ(&duet::kernels::op_profiled(cpu), &profiled);  // one table, made once
  EXPECT_NE(profiled.gemm, cpu.gemm);                      // wrapped…
  EXPECT_EQ(duet::kernels::missing_ops(profiled), std::vector<std::string>{});
  EXPECT_EQ(profiled.alloc, cpu.alloc);  // …but the memory is the base's

  duet::kernels::op_profile_reset();
  const auto want = run_ops(cpu);
  auto got = run_ops(profiled);
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)));
  EXPECT_TRUE(duet::kernels::op_profile_totals().empty());  // off: nothing counted

  duet::kernels::op_profile_enable(true);
  got = run_ops(profiled);
  duet::kernels::op_profile_enable(false);
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)));
  const auto totals = duet::kernels::op_profile_totals();
  ASSERT_EQ(totals.size(), 2u);
  EXPECT_EQ(totals.at("gemm").calls, 2);
  EXPECT_EQ(totals.at("rmsnorm_forward").calls, 1);
  EXPECT_GT(totals.at("gemm").seconds, 0.0);
  EXPECT_GT(totals.at("rmsnorm_forward").seconds, 0.0);

  duet::kernels::op_profile_reset();
  EXPECT_TRUE(duet::kernels::op_profile_totals().empty());
}

TEST(OpProfile, RefusesASecondBase) {
  const Backend& cpu = duet::kernels::cpu_backend();
  (void)duet::kernels::op_profiled(cpu);
  Backend other = cpu;
  other.name = "other";
  EXPECT_THROW(duet::kernels::op_profiled(other), std::logic_error);
}

TEST(OpProfile, TellsGemmsFromTheRest) {
  EXPECT_TRUE(duet::kernels::is_gemm_op("gemm"));
  EXPECT_TRUE(duet::kernels::is_gemm_op("linear_backward_weight"));
  EXPECT_TRUE(duet::kernels::is_gemm_op("grouped_linear_forward"));  // a MoE layer's experts
  EXPECT_FALSE(duet::kernels::is_gemm_op("attention_forward"));
  EXPECT_FALSE(duet::kernels::is_gemm_op("rmsnorm_forward"));
}
