#pragma once
// Stand-in for the CUDA runtime API, for the host emulation of the kernels (../emu.h): the
// calls duet's kernels make, on host memory.
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "tests/cuda_emu/device_sync.h"
#include "tests/cuda_emu/emu.h"

using cudaError_t = int;
constexpr cudaError_t cudaSuccess = 0;
using cudaStream_t = void*;
// Every emulated launch runs to its end on the calling thread: each thread's "stream" is done
// whenever the host asks.
inline const cudaStream_t cudaStreamPerThread = reinterpret_cast<cudaStream_t>(0x2);
constexpr unsigned cudaEventDisableTiming = 2;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };

// An event is the host time it was recorded at: every emulated launch has finished by then.
struct CUevent_st {
  double t = 0;
};
using cudaEvent_t = CUevent_st*;
inline cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st;
  return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) {
  e->t = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  return cudaSuccess;
}
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
// One stream in effect (every launch has finished when it returns): nothing to wait for.
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned = 0) { return cudaSuccess; }
inline cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t = nullptr) {
  *p = std::malloc(bytes > 0 ? bytes : 1);
  return *p ? cudaSuccess : 2;  // cudaErrorMemoryAllocation
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t = nullptr) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = (float)((b->t - a->t) * 1e3);
  return cudaSuccess;
}

inline const char* cudaGetErrorString(cudaError_t) { return "no error (host emulation)"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
// The whole device: also whatever other emulations queue on streams of their own
// (tests/nccl_emu's NCCL operations), through duet_emu::device_synchronize_hook.
inline cudaError_t cudaDeviceSynchronize() {
  if (duet_emu::device_synchronize_hook) duet_emu::device_synchronize_hook();
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t = nullptr) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t = nullptr) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemset2DAsync(void* p, size_t pitch, int value, size_t width, size_t height,
                                     cudaStream_t = nullptr) {
  for (size_t r = 0; r < height; ++r) std::memset(static_cast<char*>(p) + r * pitch, value, width);
  return cudaSuccess;
}
template <class Kernel>
cudaError_t cudaFuncSetAttribute(Kernel kernel, cudaFuncAttribute, int bytes) {
  duet_emu::allow_shared(reinterpret_cast<const void*>(kernel), bytes);
  return cudaSuccess;
}
