// kernels/cuda/streams.h: per-thread streams, the allocator's per-block events (a pool,
// since a run frees and reuses blocks in the thousands while it warms up), and each thread's
// stream-ordered scratch (common.cuh).
#include <array>
#include <mutex>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/streams.h"

namespace duet::cuda {

namespace {

std::mutex g_pool_mu;
std::vector<cudaEvent_t>* g_pool = new std::vector<cudaEvent_t>;  // never destroyed: blocks outlive main

}  // namespace

void synchronize_thread() { CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread)); }

void* block_freed() {
  cudaEvent_t e = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_pool_mu);
    if (!g_pool->empty()) e = g_pool->back(), g_pool->pop_back();
  }
  if (!e) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventRecord(e, cudaStreamPerThread));
  return e;
}

void block_reused(void* token) {
  if (!token) return;
  auto e = static_cast<cudaEvent_t>(token);
  CUDA_CHECK(cudaEventSynchronize(e));
  std::lock_guard<std::mutex> lock(g_pool_mu);
  g_pool->push_back(e);
}

void* mark_create() {
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}
void mark_record(void* mark) { CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(mark), cudaStreamPerThread)); }
void mark_synchronize(void* mark) { CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(mark))); }
void mark_destroy(void* mark) {
  if (mark) (void)cudaEventDestroy(static_cast<cudaEvent_t>(mark));  // from destructors: not worth an abort
}

void* scratch(size_t bytes, int slot) {
  struct Buffer {
    void* p = nullptr;
    size_t bytes = 0;
  };
  thread_local std::array<Buffer, 6> buffers;
  Buffer& b = buffers.at(slot);
  if (b.bytes < bytes) {
    // Grows to the largest size asked for: after the first step of a run, no more allocations.
    // Stream-ordered on this thread's stream: the old block goes once the kernels queued
    // before have used it, and nothing waits for the device (cudaFree would, NCCL's pending
    // receives included).
    if (b.p) CUDA_CHECK(cudaFreeAsync(b.p, cudaStreamPerThread));
    b.p = nullptr;
    CUDA_CHECK(cudaMallocAsync(&b.p, bytes, cudaStreamPerThread));
    b.bytes = bytes;
  }
  return b.p;
}

}  // namespace duet::cuda
