#pragma once
// Where the CUDA backend's work runs, and how it waits for it.
//
// Every host thread launches on its own default stream (the kernels are built with nvcc
// --default-stream per-thread, and cuBLAS handles use cudaStreamPerThread): the two executors
// of an F&B pair (runtime/engine.h) run their kernels concurrently, and the NCCL data plane
// (runtime/comm_nccl.h) has streams of its own. Nothing waits for the whole device: a
// cudaDeviceSynchronize would also wait for a pending NCCL receive, whose sender may be waiting
// for this very thread — a deadlock that only a GPU (or tests/nccl_emu) shows.

namespace duet::cuda {

// Waits until the kernels this thread launched have finished (cudaStreamPerThread).
void synchronize_thread();

// The caching allocator's hooks (kernels/caching_allocator.h): a freed block's last use is an
// event recorded on the freeing thread's stream; handing the block out again (or back to
// CUDA) waits for that event only.
void* block_freed();
void block_reused(void* token);

// kernels::Backend's marks: an event each, recorded on the calling thread's stream.
void* mark_create();
void mark_record(void* mark);
void mark_synchronize(void* mark);
void mark_destroy(void* mark);

}  // namespace duet::cuda
