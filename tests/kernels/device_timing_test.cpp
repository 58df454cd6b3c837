// Device timing through the backend table (kernels::Backend::timing_begin / timing_end): the
// CUDA backend's code — the Timed wrapper around every op, the event pool, the anchor that
// puts GPU timestamps on the host clock — on the GPU (skips visibly without one) and run by
// the host emulation (tests/cuda_emu), whose events are host timestamps taken when the
// emulated stream gets to them.
#include <gtest/gtest.h>

#include <chrono>
#include <iomanip>
#include <vector>

#include "kernels/backend.h"
#include "tests/cuda_emu/backend.h"

namespace {

using duet::kernels::Backend;
using duet::kernels::DeviceSpan;

double host_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

TEST(DeviceTiming, AHostBackendHasNone) {
  const Backend& cpu = duet::kernels::cpu_backend();
  EXPECT_EQ(cpu.timing_begin, nullptr);
  EXPECT_EQ(cpu.timing_end, nullptr);
}

class DeviceTimingOn : public testing::TestWithParam<std::string> {
 protected:
  // The backend named by the parameter, or nullptr (the test skips) when absent.
  const Backend* backend() {
    if (GetParam() == "cuda_emulated") return &duet::test::emulated_cuda_backend();
    return duet::kernels::cuda_backend();
  }
  // n floats in the backend's memory, each `v`.
  float* make(int n, float v) {
    std::vector<float> host(n, v);
    float* p = static_cast<float*>(b_->alloc(n * sizeof(float)));
    b_->copy_from_host(p, host.data(), n * sizeof(float));
    mem_.push_back(p);
    return p;
  }
  void TearDown() override {
    for (float* p : mem_) b_->free(p);
  }
  const Backend* b_ = nullptr;
  std::vector<float*> mem_;
};

TEST_P(DeviceTimingOn, ASpanCoversTheOpsAndTheirKernelTimeOnTheHostClock) {
  b_ = backend();
  if (!b_) GTEST_SKIP() << "cuda backend absent: " << duet::kernels::cuda_backend_absent_reason();
  const Backend& b = *b_;
  const int n = GetParam() == "cuda" ? 1 << 20 : 4096;  // an emulated CUDA thread is a fiber
  float *x = make(n, 0.5f), *y = make(n, 0.0f);
  b.synchronize();
  const double before = host_now();
  ASSERT_TRUE(b.timing_begin());
  b.sigmoid_forward(y, x, n);
  b.scale(y, n, 2.0f);
  b.sigmoid_forward(x, y, n);
  DeviceSpan s;
  ASSERT_TRUE(b.timing_end(&s));
  const double after = host_now();
  // On the host clock through an anchor event, in float milliseconds since it (timing.cu):
  // steps of ~1 µs when the anchor is seconds old, so the span may overshoot the host's
  // readings around it by as much.
  const double step = 2e-6;
  EXPECT_LE(before - step, s.t0) << std::setprecision(12) << before << " " << s.t0;
  EXPECT_LT(s.t0, s.t1);
  EXPECT_LE(s.t1, after + step) << std::setprecision(12) << s.t1 << " " << after;
  EXPECT_GT(s.busy, 0);
  EXPECT_LE(s.busy, s.t1 - s.t0 + 1e-9);  // the kernels ran inside the span
}

TEST_P(DeviceTimingOn, NestedBeginIsRefusedAndAnEmptyStretchHasNoSpan) {
  b_ = backend();
  if (!b_) GTEST_SKIP() << "cuda backend absent: " << duet::kernels::cuda_backend_absent_reason();
  const Backend& b = *b_;
  ASSERT_TRUE(b.timing_begin());
  EXPECT_FALSE(b.timing_begin());  // already timing: the outer stretch keeps its ops
  DeviceSpan s;
  EXPECT_FALSE(b.timing_end(&s));  // no op ran
  EXPECT_FALSE(b.timing_end(&s));  // not timing
  // Off: ops run untimed, and the next stretch starts empty.
  float* x = make(64, 1.0f);
  b.scale(x, 64, 0.5f);
  ASSERT_TRUE(b.timing_begin());
  EXPECT_FALSE(b.timing_end(&s));
  float x0 = 0;
  b.copy_to_host(&x0, x, sizeof x0);
  EXPECT_EQ(x0, 0.5f);
}

INSTANTIATE_TEST_SUITE_P(Backends, DeviceTimingOn, testing::Values("cuda_emulated", "cuda"),
                         [](const testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
