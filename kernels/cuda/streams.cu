// kernels/cuda/streams.h: per-thread streams, and the allocator's per-block events (a pool,
// since a run frees and reuses blocks in the thousands while it warms up).
#include <mutex>
#include <vector>

#include "kernels/cuda/check.h"
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

}  // namespace duet::cuda
