#pragma once
// Stand-in for the CUDA runtime API, for the host emulation of the kernels (../emu.h): the
// calls duet's kernels make, on host memory.
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "tests/cuda_emu/device_sync.h"
#include "tests/cuda_emu/emu.h"

using cudaError_t = int;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorMemoryAllocation = 2;
constexpr cudaError_t cudaErrorNotReady = 600;
using cudaStream_t = void*;
// Work queued on a stream runs when something waits for it (../emu.h). Stream 0 is the
// per-thread one, as the kernels are built (--default-stream per-thread).
inline const cudaStream_t cudaStreamPerThread = reinterpret_cast<cudaStream_t>(0x2);
constexpr unsigned cudaEventDisableTiming = 2;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };

// An event: its latest record's stream and position there, and the host time the stream got
// there (shared with the queued record, which may run after the event is destroyed).
struct CUevent_st {
  duet_emu::StreamRef stream;
  long position = 0;
  std::shared_ptr<double> when = std::make_shared<double>(0.0);
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
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr) {
  e->stream = duet_emu::stream_of(s);
  e->when = std::make_shared<double>(0.0);
  e->position = duet_emu::enqueue(e->stream, [when = e->when] {
    *when = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  });
  return cudaSuccess;
}
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
inline cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (e->stream) duet_emu::run_until(e->stream, e->position);
  return cudaSuccess;
}
inline cudaError_t cudaEventQuery(cudaEvent_t e) {
  return !e->stream || duet_emu::reached(e->stream, e->position) ? cudaSuccess : cudaErrorNotReady;
}
// Work queued on `s` after this waits for the work before `e`'s latest record.
inline cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned = 0) {
  if (e->stream) duet_emu::enqueue(duet_emu::stream_of(s), [on = e->stream, position = e->position] {
    duet_emu::run_until(on, position);
  });
  return cudaSuccess;
}
// Stream-ordered allocation: the block is there at once (as its address is on a device), and
// freed when the stream gets to the free.
inline cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t = nullptr) {
  *p = duet_emu::device_alloc(bytes);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t s = nullptr) {
  duet_emu::enqueue(duet_emu::stream_of(s), [p] { duet_emu::device_free(p); });
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  const duet_emu::StreamRef stream = duet_emu::stream_of(s);
  duet_emu::run_until(stream, duet_emu::queued(stream));
  return cudaSuccess;
}
// Both events must have been reached (else cudaErrorNotReady, as on a device).
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (cudaEventQuery(a) != cudaSuccess || cudaEventQuery(b) != cudaSuccess) return cudaErrorNotReady;
  *ms = (float)((*b->when - *a->when) * 1e3);
  return cudaSuccess;
}

inline const char* cudaGetErrorString(cudaError_t) { return "no error (host emulation)"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
// The whole device: also whatever other emulations queue on streams of their own
// (tests/nccl_emu's NCCL operations), through duet_emu::device_synchronize_hook.
inline cudaError_t cudaDeviceSynchronize() {
  duet_emu::run_all();
  if (duet_emu::device_synchronize_hook) duet_emu::device_synchronize_hook();
  return cudaSuccess;
}
// Synchronous: after the calling thread's queued work (its per-thread stream).
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  cudaStreamSynchronize(cudaStreamPerThread);
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
// Device to device (the kernels' only use): read and written when the stream gets there.
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t s = nullptr) {
  duet_emu::enqueue(duet_emu::stream_of(s), [=] { std::memcpy(dst, src, bytes); });
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = nullptr) {
  duet_emu::enqueue(duet_emu::stream_of(s), [=] { std::memset(p, value, bytes); });
  return cudaSuccess;
}
inline cudaError_t cudaMemset2DAsync(void* p, size_t pitch, int value, size_t width, size_t height,
                                     cudaStream_t s = nullptr) {
  duet_emu::enqueue(duet_emu::stream_of(s), [=] {
    for (size_t r = 0; r < height; ++r) std::memset(static_cast<char*>(p) + r * pitch, value, width);
  });
  return cudaSuccess;
}
template <class Kernel>
cudaError_t cudaFuncSetAttribute(Kernel kernel, cudaFuncAttribute, int bytes) {
  duet_emu::allow_shared(reinterpret_cast<const void*>(kernel), bytes);
  return cudaSuccess;
}
