#pragma once
// Host stand-in for the CUDA runtime calls of runtime/comm_nccl.cpp (tests/nccl_emu/README):
// a stream is a worker thread running its work in order, an event is reached when its
// stream's worker gets to it, "device" memory is host memory this file allocated. Declared
// here with C++ linkage, so nothing clashes with the real libcudart a test binary also links.
#include <cstddef>

namespace duet_nccl_emu {
struct Stream;
struct Event;
}  // namespace duet_nccl_emu

using cudaError_t = int;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
constexpr cudaError_t cudaErrorNotReady = 600;
using cudaStream_t = duet_nccl_emu::Stream*;
using cudaEvent_t = duet_nccl_emu::Event*;
constexpr unsigned cudaStreamNonBlocking = 1;
// The calling thread's stream: the compute kernels'. An event recorded there is queued on the
// kernels' emulation's stream (tests/cuda_emu/device_sync.h), or reached at once without it.
inline cudaStream_t const cudaStreamPerThread = reinterpret_cast<cudaStream_t>(0x2);
constexpr unsigned cudaEventDisableTiming = 2;
constexpr unsigned cudaMemAttachGlobal = 1;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaMemoryType { cudaMemoryTypeUnregistered = 0, cudaMemoryTypeHost = 1, cudaMemoryTypeDevice = 2, cudaMemoryTypeManaged = 3 };
struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
  void* devicePointer;
  void* hostPointer;
};

cudaError_t cudaGetDeviceCount(int* n);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
inline cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventSynchronize(cudaEvent_t e);
// Work queued on `s` after this waits until `e`'s latest record is reached.
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
// Milliseconds between the times two completed events' streams reached them (the host's clock).
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t s);
cudaError_t cudaFreeAsync(void* p, cudaStream_t s);
cudaError_t cudaMallocManaged(void** p, size_t bytes, unsigned flags = cudaMemAttachGlobal);
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s);
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p);
