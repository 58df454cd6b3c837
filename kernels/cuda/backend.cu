// The CUDA backend: every op of the table as a duet::cuda kernel (kernels/cuda/ops.h), on
// managed memory, timed by CUDA events while the calling thread asks (timing.h). Kernels run
// on the calling thread's own default stream (streams.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>

#include "kernels/backend.h"
#include "kernels/caching_allocator.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/streams.h"
#include "kernels/cuda/timing.h"

namespace duet::kernels {

namespace {

// Managed memory: the parameter arena's spans are used on the host as well (see
// kernels/backend.h), and cudaMallocManaged returns storage aligned to at least 256 bytes.
// Out of memory is nullptr (the cache then gives its blocks back and retries), any other
// error aborts with its place.
void* managed_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMallocManaged(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    return nullptr;
  }
  CUDA_CHECK(err);
  return p;
}
void managed_free(void* p) { CUDA_CHECK(cudaFree(p)); }

// Through a cache (kernels/caching_allocator.h): cudaMallocManaged and cudaFree synchronise
// the device, and buffers are freed and made again every step (MoE rows change size). A
// freed block may still be in use by kernels queued before the free (the host zero-fills a
// grown buffer at once): handing it out again waits for the freeing thread's stream to get
// past the free (kernels/cuda/streams.h) — not for the device, where NCCL may be waiting.
//
// Managed memory does not run out by itself: past the device's it pages to the host, and a
// program that asks for more than the card has free can hang the GPU, not only itself. So the
// cache holds at most this process's share of the device (its memory divided among the
// processes on it: set_cuda_processes_per_device), and no more than was free at its first
// allocation, less a reserve for what allocates beside it (each thread's stream-ordered
// scratch, the BF16 weight copies — 2 bytes per parameter —, cuBLAS and NCCL): a tenth of the
// share, at least 4 GiB where the share is 16 GiB or more. Past that an allocation fails with
// kernels::OutOfMemory, which says so. A share, not the free memory alone: ranks that start
// together all see the card empty.
std::atomic<int> g_processes_per_device{1};
size_t managed_cap() {
  size_t free = 0, total = 0;
  CUDA_CHECK(cudaMemGetInfo(&free, &total));
  const size_t share = std::min(free, total / (size_t)std::max(1, g_processes_per_device.load()));
  const size_t reserve = std::max(share / 10, std::min((size_t)4 << 30, share / 4));
  return share - reserve;
}
CachingAllocator& cache() {
  static CachingAllocator* c = new CachingAllocator(&managed_alloc, &managed_free, &cuda::block_freed,
                                                    &cuda::block_reused, managed_cap());  // outlives every buffer
  return *c;
}
void* device_alloc(size_t bytes) { return cache().alloc(bytes); }
void device_free(void* p) { cache().free(p); }
// cudaMemcpyDefault: the pointers say which side they are on (unified addressing).
void device_copy(void* dst, const void* src, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}
void device_synchronize() { cuda::synchronize_thread(); }  // this thread's stream only: streams.h

Backend make_cuda_backend() {
  Backend b{};
  b.name = "cuda";
  b.alloc = &device_alloc;
  b.free = &device_free;
  b.copy_to_host = &device_copy;
  b.copy_from_host = &device_copy;
  b.synchronize = &device_synchronize;
  b.attention_saved_floats = &cuda::attention_saved_floats;
  b.timing_begin = &cuda::timing_begin;
  b.timing_end = &cuda::timing_end;
  b.mark_create = &cuda::mark_create, b.mark_record = &cuda::mark_record;
  b.mark_synchronize = &cuda::mark_synchronize, b.mark_destroy = &cuda::mark_destroy;
#define DUET_CUDA_SLOT(op) b.op = &cuda::Timed<&cuda::op>::call;
  DUET_BACKEND_OPS(DUET_CUDA_SLOT)
#undef DUET_CUDA_SLOT
  return b;
}

// "" when the current device can run the backend, else why not.
std::string device_problem() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    (void)cudaGetLastError();  // "no device" is an answer here, not an error to keep
    return "no CUDA device is visible to this process (driver, CUDA_VISIBLE_DEVICES)";
  }
  int dev = 0, concurrent = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&concurrent, cudaDevAttrConcurrentManagedAccess, dev) != cudaSuccess) {
    const std::string err = cudaGetErrorString(cudaGetLastError());
    return "CUDA device " + std::to_string(dev) + " cannot be queried: " + err;
  }
  if (!concurrent)
    return "CUDA device " + std::to_string(dev) + " (" + prop.name +
           ") lacks concurrent managed access (cudaDevAttrConcurrentManagedAccess 0): the host reads managed "
           "buffers while kernels run, which faults there";
  return "";
}

const std::string& problem() {
  static const std::string p = device_problem();
  return p;
}

}  // namespace

const Backend* cuda_backend() {
  static const Backend b = make_cuda_backend();
  return problem().empty() ? &b : nullptr;
}

const Backend* cuda_bf16_backend() {
  static const Backend b = [] {
    Backend t = make_cuda_backend();
    t.name = "cuda-bf16";
#define DUET_CUDA_BF16_SLOT(op) t.op = &cuda::Timed<&cuda::op##_bf16>::call;
    DUET_CUDA_BF16_OPS(DUET_CUDA_BF16_SLOT)
#undef DUET_CUDA_BF16_SLOT
    t.weights_fixed = &cuda::bf16_weights_fixed;
    return t;
  }();
  return problem().empty() ? &b : nullptr;
}

std::string cuda_backend_absent_reason() { return problem(); }
void set_cuda_processes_per_device(int n) { g_processes_per_device = std::max(1, n); }

}  // namespace duet::kernels
