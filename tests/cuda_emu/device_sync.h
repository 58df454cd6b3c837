#pragma once
// How the kernels' emulation (tests/cuda_emu) and other emulations with streams of their own
// (tests/nccl_emu: its NCCL operations) meet. Each is nullptr when the other is not linked.
#include <cstddef>
#include <cstdlib>
#include <functional>

namespace duet_emu {
// What the emulated cudaDeviceSynchronize also waits for: the other emulation's streams.
inline void (*device_synchronize_hook)() = nullptr;
// An event the other emulation records on cudaStreamPerThread: `reach` is queued on the
// calling thread's stream of the kernels' emulation, which runs its work only when waited for
// (emu.h); the function returned runs that stream until `reach` has run. Without the kernels'
// emulation, `reach` runs at once (nothing is queued there) and nullptr is returned.
inline std::function<void()> (*queue_on_thread_stream)(std::function<void()> reach) = nullptr;

// Device memory: the other emulation's when it has one, so that it takes the kernels' buffers
// for device memory, as NCCL takes the CUDA backend's managed memory on a GPU (and uses it in
// place instead of staging it). Else the heap. 256-byte aligned, as cudaMalloc*'s.
inline void* (*device_alloc_hook)(size_t bytes) = nullptr;
inline void (*device_free_hook)(void* p) = nullptr;
inline void* device_alloc(size_t bytes) {
  if (device_alloc_hook) return device_alloc_hook(bytes);
  return std::aligned_alloc(256, (bytes + 255) / 256 * 256 + (bytes == 0 ? 256 : 0));
}
inline void device_free(void* p) {
  if (device_free_hook)
    device_free_hook(p);
  else
    std::free(p);
}
}  // namespace duet_emu
