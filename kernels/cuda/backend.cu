// The CUDA backend: the duet::cuda kernels that exist so far (RMSNorm forward and
// backward-input); every other op is nullptr until it is written. Kernels run on the
// calling thread's current stream.
#include <cuda_runtime.h>

#include "kernels/backend.h"
#include "kernels/cuda/check.h"
#include "kernels/norm.h"

namespace duet::kernels {

namespace {

// Managed memory: the parameter arena's spans are used on the host as well (see
// kernels/backend.h), and cudaMallocManaged returns storage aligned to at least 256 bytes.
void* device_alloc(size_t bytes) {
  void* p = nullptr;
  if (bytes) CUDA_CHECK(cudaMallocManaged(&p, bytes));
  return p;
}
void device_free(void* p) { CUDA_CHECK(cudaFree(p)); }  // cudaFree(nullptr) is a no-op
// cudaMemcpyDefault: the pointers say which side they are on (unified addressing).
void device_copy(void* dst, const void* src, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}
void device_synchronize() { CUDA_CHECK(cudaDeviceSynchronize()); }

Backend make_cuda_backend() {
  Backend b{};  // ops not set here stay nullptr: not implemented on the GPU yet
  b.name = "cuda";
  b.alloc = &device_alloc;
  b.free = &device_free;
  b.copy_to_host = &device_copy;
  b.copy_from_host = &device_copy;
  b.synchronize = &device_synchronize;
  b.rmsnorm_forward = &cuda::rmsnorm_forward;
  b.rmsnorm_backward_input = &cuda::rmsnorm_backward_input;
  return b;
}

bool have_device() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  if (!ok) (void)cudaGetLastError();  // "no device" is an answer here, not an error to keep
  return ok;
}

}  // namespace

const Backend* cuda_backend() {
  static const Backend b = make_cuda_backend();
  static const bool present = have_device();
  return present ? &b : nullptr;
}

}  // namespace duet::kernels
