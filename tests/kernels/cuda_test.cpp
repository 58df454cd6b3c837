// GPU kernels against the CPU kernels (the reference), same inputs, normalised error
// ‖gpu − cpu‖² / ‖cpu‖² (ggml's nmse). Skips visibly where no GPU exists.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/norm.h"
#include "tests/kernels/grad_check.h"

#if DUET_HAVE_CUDA
#include <cuda_runtime.h>

namespace {

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

struct DeviceBuffer {
  float* p = nullptr;
  explicit DeviceBuffer(const std::vector<float>& host) {
    cudaMalloc(&p, host.size() * sizeof(float));
    cudaMemcpy(p, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice);
  }
  ~DeviceBuffer() { cudaFree(p); }
  std::vector<float> get(size_t n) const {
    std::vector<float> h(n);
    cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost);
    return h;
  }
};

double nmse(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - ref[i]) * (a[i] - ref[i]), den += ref[i] * ref[i];
  return num / den;
}

}  // namespace

TEST(CudaKernels, RMSNormMatchesCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device on this machine";
  const int N = 37, C = 300;
  auto x = duet::test::random_vec(N * C, 1), w = duet::test::random_vec(C, 2), dy = duet::test::random_vec(N * C, 3);
  std::vector<float> y(N * C), r(N), dx(N * C, 0.5f);
  duet::cpu::rmsnorm_forward(y.data(), r.data(), x.data(), w.data(), N, C, 1e-5f);
  duet::cpu::rmsnorm_backward_input(dx.data(), dy.data(), x.data(), w.data(), r.data(), N, C);
  const std::vector<float> zeros(N * C, 0.0f), halves(N * C, 0.5f), zero_rows(N, 0.0f);
  DeviceBuffer dx_(x), dw_(w), ddy(dy), dy_(zeros), dr(zero_rows), ddx(halves);
  duet::cuda::rmsnorm_forward(dy_.p, dr.p, dx_.p, dw_.p, N, C, 1e-5f);
  duet::cuda::rmsnorm_backward_input(ddx.p, ddy.p, dx_.p, dw_.p, dr.p, N, C);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_LT(nmse(dy_.get(N * C), y), 1e-10);
  EXPECT_LT(nmse(dr.get(N), r), 1e-10);
  EXPECT_LT(nmse(ddx.get(N * C), dx), 1e-10);
}

#else

TEST(CudaKernels, RMSNormMatchesCpu) { GTEST_SKIP() << "built without CUDA (DUET_CUDA=OFF or no nvcc)"; }

#endif
