// The host emulation of CUDA kernels (tests/cuda_emu/emu.h), which the backend tests use to
// run the CUDA kernels' source without a GPU: its barriers, shuffles and shared memory behave
// as the device's, and a block whose threads wait at different barriers is reported.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <thread>
#include <vector>

#include "tests/cuda_emu/include/cuda_runtime.h"  // the stand-in: cudaFuncSetAttribute

namespace {

TEST(CudaEmulation, ThreadsSeeTheirIndicesAndSyncthreadsOrdersSharedMemory) {
  std::vector<int> out(3 * 64, -1);
  duet_emu::Launch(3, 64, 64 * sizeof(int)).run([&] {
    int* shared = duet_emu::dynamic_shared<int>();
    shared[threadIdx.x] = (int)(blockIdx.x * 1000 + threadIdx.x);
    __syncthreads();
    // Each thread reads what its mirror wrote: only right after every write.
    out[blockIdx.x * 64 + threadIdx.x] = shared[63 - threadIdx.x];
  });
  for (int b = 0; b < 3; ++b)
    for (int t = 0; t < 64; ++t) EXPECT_EQ(out[b * 64 + t], b * 1000 + 63 - t);
}

TEST(CudaEmulation, ShufflesExchangeWithinAWarp) {
  std::vector<float> down(64), xsum(64), bcast(64);
  duet_emu::Launch(1, 64).run([&] {
    const unsigned t = threadIdx.x;
    down[t] = __shfl_down_sync(0xffffffffu, (float)t, 4);
    float v = (float)t;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    xsum[t] = v;
    bcast[t] = __shfl_sync(0xffffffffu, (float)t, 5);
  });
  for (unsigned t = 0; t < 64; ++t) {
    const unsigned warp = t / 32, lane = t % 32;
    EXPECT_EQ(down[t], lane + 4 < 32 ? t + 4 : t);  // past the warp's end: its own value
    EXPECT_EQ(xsum[t], warp == 0 ? 496.0f : 32 * 32 + 496.0f);
    EXPECT_EQ(bcast[t], warp * 32 + 5);
  }
}

TEST(CudaEmulation, ReturnedThreadsNoLongerHoldUpABarrier) {
  int after = 0;
  duet_emu::Launch(1, 64).run([&] {
    if (threadIdx.x >= 32) return;  // a whole warp leaves early
    __syncthreads();
    ++after;
  });
  EXPECT_EQ(after, 32);
}

TEST(CudaEmulation, OneWarpMayShuffleWhileAnotherWaitsAtSyncthreads) {
  std::vector<float> got(64);
  duet_emu::Launch(1, 64).run([&] {
    if (threadIdx.x >= 32) got[threadIdx.x] = __shfl_sync(0xffffffffu, (float)threadIdx.x, 0);
    __syncthreads();
    if (threadIdx.x < 32) got[threadIdx.x] = got[threadIdx.x + 32];
  });
  for (int t = 0; t < 64; ++t) EXPECT_EQ(got[t], 32.0f);
}

TEST(CudaEmulation, ThreadsWaitingAtDifferentBarriersAreAnErrorNotAHang) {
  EXPECT_THROW(duet_emu::Launch(1, 64).run([&] {
                 if (threadIdx.x % 32 < 16)  // half of each warp at one barrier, half at another
                   __syncthreads();
                 else
                   (void)__shfl_sync(0xffffffffu, 1.0f, 0);
               }),
               std::logic_error);
}

TEST(CudaEmulation, WhatADeviceLeavesUndefinedIsAnError) {
  // Shuffling from a lane that returned before the shuffle.
  EXPECT_THROW(duet_emu::Launch(1, 32).run([&] {
                 if (threadIdx.x == 7) return;
                 (void)__shfl_sync(0xffffffffu, 1.0f, 7);
               }),
               std::logic_error);
  // Writing past the launch's dynamic shared memory.
  EXPECT_THROW(duet_emu::Launch(1, 32, 32 * sizeof(float)).run([&] {
                 duet_emu::dynamic_shared<float>()[threadIdx.x + 1] = 1.0f;
               }),
               std::logic_error);
  // Shared memory nobody wrote reads as NaN, not as zero.
  float unwritten = 0;
  duet_emu::Launch(1, 32, 64).run([&] {
    if (threadIdx.x == 0) unwritten = duet_emu::dynamic_shared<float>()[3];
  });
  EXPECT_TRUE(std::isnan(unwritten));
}

void big_shared_kernel(float* out) {
  float* s = duet_emu::dynamic_shared<float>();
  s[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % 32];
}

TEST(CudaEmulation, MoreThan48KiBOfSharedMemoryMustBeAllowedFirst) {
  std::vector<float> out(32);
  const size_t bytes = 60 * 1024;
  EXPECT_THROW(duet_emu::Launch(1, 32, bytes).call(&big_shared_kernel, out.data()), std::logic_error);
  cudaFuncSetAttribute(&big_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  duet_emu::Launch(1, 32, bytes).call(&big_shared_kernel, out.data());
  cudaStreamSynchronize(cudaStreamPerThread);
  EXPECT_EQ(out[5], 1.0f);
  EXPECT_THROW(duet_emu::Launch(1, 32, 300 * 1024).call(&big_shared_kernel, out.data()), std::logic_error);
}

TEST(CudaEmulation, LaunchArgumentsAreEvaluatedOnce) {
  int evaluated = 0, sum = 0;
  auto kernel = [&](int v) { sum += v; };
  duet_emu::Launch(2, 64).call(kernel, (++evaluated, 3));
  EXPECT_EQ(evaluated, 1);
  cudaStreamSynchronize(cudaStreamPerThread);
  EXPECT_EQ(evaluated, 1);
  EXPECT_EQ(sum, 2 * 64 * 3);
}

void add_kernel(float* x, float v) { x[threadIdx.x] += v; }

// The device as slow as it may be: queued work runs when something waits for it, so a read
// without the wait sees the values from before — what a GPU shows only now and then.
TEST(CudaEmulation, QueuedWorkRunsOnlyWhenWaitedFor) {
  std::vector<float> x(32, 1.0f);
  duet_emu::Launch(1, 32).call(&add_kernel, x.data(), 2.0f);
  EXPECT_EQ(x[7], 1.0f);  // not yet
  x[7] = 10.0f;           // the host writes after the launch: the kernel sees it
  float out = 0;
  cudaMemcpy(&out, &x[7], sizeof out, cudaMemcpyDeviceToHost);  // synchronous: after the kernel
  EXPECT_EQ(out, 12.0f);

  cudaEvent_t e = nullptr;
  cudaEventCreate(&e);
  duet_emu::Launch(1, 32).call(&add_kernel, x.data(), 1.0f);
  cudaEventRecord(e, cudaStreamPerThread);
  duet_emu::Launch(1, 32).call(&add_kernel, x.data(), 100.0f);
  cudaEventSynchronize(e);  // the work before the record, not after
  EXPECT_EQ(x[0], 4.0f);
  cudaStreamSynchronize(cudaStreamPerThread);
  EXPECT_EQ(x[0], 104.0f);
  cudaEventDestroy(e);
}

// Another thread's stream waits on the device for an event: its work runs after the work
// before the event, whoever waits. Without the wait it runs first and reads the old value.
TEST(CudaEmulation, AStreamWaitsForAnotherThreadsEventOnlyWhenTold) {
  for (bool wait : {true, false}) {
    std::vector<float> x(32, 1.0f), y(32, 0.0f);
    cudaEvent_t e = nullptr;
    cudaEventCreate(&e);
    duet_emu::Launch(1, 32).call(&add_kernel, x.data(), 2.0f);  // x = 3, on this thread's stream
    cudaEventRecord(e, cudaStreamPerThread);
    std::thread([&] {
      if (wait) cudaStreamWaitEvent(cudaStreamPerThread, e, 0);
      cudaMemcpyAsync(y.data(), x.data(), sizeof(float) * 32, cudaMemcpyDeviceToDevice, cudaStreamPerThread);
      cudaStreamSynchronize(cudaStreamPerThread);
    }).join();
    EXPECT_EQ(y[3], wait ? 3.0f : 1.0f) << "wait " << wait;
    cudaStreamSynchronize(cudaStreamPerThread);
    EXPECT_EQ(x[3], 3.0f);
    cudaEventDestroy(e);
  }
}

// A queued kernel's error reaches whoever waits, and stays: the stream runs nothing after it
// and every later wait says so again, as a device's sticky errors do. A block of more than
// 1024 threads is refused at the launch. (On a thread of its own: its stream is spoilt.)
TEST(CudaEmulation, AQueuedKernelsErrorIsStickyAndABadBlockIsRefusedAtLaunch) {
  std::thread([] {
    std::vector<float> x(32, 1.0f);
    EXPECT_THROW(duet_emu::Launch(1, 2048).call(&add_kernel, x.data(), 1.0f), std::invalid_argument);
    auto failing = [](float* p) {
      if (threadIdx.x == 3) throw std::runtime_error("kernel fault");
      p[threadIdx.x] += 1.0f;
    };
    duet_emu::Launch(1, 32).call(failing, x.data());
    duet_emu::Launch(1, 32).call(&add_kernel, x.data(), 5.0f);
    EXPECT_THROW(cudaStreamSynchronize(cudaStreamPerThread), std::runtime_error);
    EXPECT_THROW(cudaStreamSynchronize(cudaStreamPerThread), std::runtime_error);
    EXPECT_EQ(x[10], 1.0f);  // the block stopped at its error, and the next kernel never ran
  }).join();
}

}  // namespace
