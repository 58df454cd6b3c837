#pragma once
// The NCCL communicator's own source (runtime/comm_nccl.cpp) compiled a second time, against
// host stand-ins of NCCL and of the CUDA runtime calls it makes (tests/nccl_emu/include,
// nccl_emu.cpp), with its entry points renamed to these. What runs is duet's code —
// staging, grouping, block arithmetic, non-blocking polling, events, abort — over ranks that
// are threads; what is emulated is NCCL's contract as its documentation states it:
//   - a stream runs its work in issue order, and an NCCL operation occupies its stream until
//     it is met (a receive waits for its send, a collective for every member);
//   - point-to-point has no tags: per pair of ranks, the n-th send meets the n-th receive;
//     unequal sizes are an asynchronous error (ncclInvalidUsage) on both communicators;
//   - the operations between ncclGroupStart and ncclGroupEnd are posted together;
//   - a non-blocking communicator answers ncclInProgress while it initialises, after
//     ncclGroupEnd and while it finalises, and the caller polls ncclCommGetAsyncError;
//   - ncclCommAbort ends the communicator's operations and withdraws its posted ones;
//   - "device" memory is what cudaMalloc*/cudaMallocManaged returned here (the kernels' emulation
//     allocates there too: tests/cuda_emu/device_sync.h); anything else is
//     host memory (cudaPointerGetAttributes says unregistered), which comm_nccl stages;
//   - a copy from pageable host memory synchronises its stream first (the worst case CUDA
//     allows), then reads the source.
// Not emulated: NCCL's algorithms and their summation order (a reduction here adds in rank
// order), SM contention between concurrent kernels, anything between devices.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "runtime/comm.h"

namespace duet::runtime {
std::string emulated_nccl_absent_reason();
std::unique_ptr<Communicator> emulated_make_nccl_communicator(Communicator& control,
                                                              Clock::duration init_timeout = std::chrono::minutes(5));
void emulated_abort_nccl_communicator(Communicator& nccl);
}  // namespace duet::runtime

namespace duet::test {
// "Device" memory of the emulation: what the emulated communicator uses in place.
void* emulated_device_alloc(size_t bytes);
void emulated_device_free(void* p);
// cudaStreamWaitEvent calls since the process started: a communicator's stream told to wait on
// the device for other work (sends ordered after their producer's kernels).
long emulated_stream_waits();
}  // namespace duet::test
