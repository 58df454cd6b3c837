#pragma once
// The CUDA kernels' own source, run on the host: the CUDA threads of a block are fibers on
// the launching thread (emu.cpp), __syncthreads and warp shuffles are barriers between them,
// and blocks run one after another, so a `__shared__` variable is a `static thread_local` (one
// per block at a time, and per host thread: ranks that are threads launch concurrently). Included through the stand-in <cuda_runtime.h> of include/ by the kernels/cuda
// sources, which translate.pl rewrites only where C++ cannot parse CUDA: `k<<<grid, block>>>(args)`,
// `extern __shared__`, and the namespace (duet::cuda → duet::cuda_emu, so the emulated
// kernels can sit next to the real ones in one binary).
//
// What it checks: the kernels' indexing, masking, tiling and arithmetic — every op against
// the CPU backend, on machines without a GPU (tests/kernels/backend_ops_test.cpp) — and the
// order of work on streams: a launch, a cuBLAS call, an async copy, set or free is queued on
// its stream and runs only when something waits for it (below), so a host read without a
// wait, or a kernel on one thread's stream using another's output without an event, gets the
// wrong values here instead of usually the right ones on a GPU. What it cannot: device memory
// semantics beyond that, timing, races between the threads of a kernel (they run one at a
// time), warp-synchronous code without barriers (each shuffle here is a barrier of the warp's
// live threads), and anything of cuBLAS beyond the column-major contract
// (include/cublas_v2.h). A GPU run is still what checks the kernels on the device.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <type_traits>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace duet_emu {

// The value `v` of lane `src` of the calling thread's warp (a barrier of the warp's threads).
uint64_t exchange(uint64_t v, int src_lane);
void sync_block();
void* dynamic_shared_bytes();

// A kernel's dynamic shared memory above 48 KiB must be allowed first
// (cudaFuncSetAttribute(..., cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)), and none may
// have more than an H100/H200 block can (227 KiB): a launch asking more is an error, as on a
// device.
constexpr size_t kDefaultSharedBytes = 48 * 1024, kMaxSharedBytes = 227 * 1024;
void allow_shared(const void* kernel, int bytes);
void check_shared(const void* kernel, size_t bytes);  // throws std::logic_error
void check_block(dim3 block);  // 1 to 1024 threads, else throws std::invalid_argument

template <class T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_bytes());
}

template <class T>
T shuffle(T v, int src_lane) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>);
  uint64_t in = 0;
  std::memcpy(&in, &v, sizeof v);
  const uint64_t out = exchange(in, src_lane);
  T r;
  std::memcpy(&r, &out, sizeof r);
  return r;
}

// Streams: the device as slow as it may be. Work queued on a stream runs in queue order, but
// only when a host thread waits for it (a stream or event synchronize, a synchronous copy,
// cudaDeviceSynchronize) or another stream's work does (cudaStreamWaitEvent) — on the thread
// that waits. So results are deterministic, and a missing wait shows as stale values, not as
// a rare race. A host thread's default stream (stream 0 and cudaStreamPerThread: the kernels
// are built with --default-stream per-thread) outlives the thread until its work has run.
struct Stream;
using StreamRef = std::shared_ptr<Stream>;
StreamRef stream_of(const void* cuda_stream);
// Queues `work`; returns the stream's position after it (pieces queued so far).
long enqueue(const StreamRef& s, std::function<void()> work);
long queued(const StreamRef& s);
bool reached(const StreamRef& s, long position);  // the first `position` pieces have run
// Runs them. A piece that throws stops the stream for good: this and every later wait rethrow
// its exception (a kernel's error is sticky, as on a device).
void run_until(const StreamRef& s, long position);
void run_all();  // every stream's work queued so far

// Work the host queued since the process started: kernel launches, and cuBLAS calls (what a
// GPU's host thread pays for per call, whatever the shapes).
struct Queued {
  long launches = 0, blas_calls = 0;
};
Queued queued_work();
void count_launch();
void count_blas_call();

// `grid` blocks of `block` threads, `shared` bytes of dynamic shared memory, on `stream`.
class Launch {
 public:
  Launch(dim3 grid, dim3 block, size_t shared = 0, const void* stream = nullptr)
      : grid_(grid), block_(block), shared_(shared), stream_(stream) {}
  // Runs the kernel now, to its end (the emulation's own tests).
  void run(const std::function<void()>& kernel) const;
  // kernel(args...) in every thread, queued on the stream: the arguments evaluated once, now,
  // and the launch's configuration checked now (as a launch does).
  template <class Kernel, class... Args>
  void call(Kernel kernel, Args... args) const {
    check_block(block_);
    if constexpr (std::is_pointer_v<Kernel>) check_shared(reinterpret_cast<const void*>(kernel), shared_);
    const Launch self = *this;
    count_launch();
    enqueue(stream_of(stream_), [self, kernel, args...] { self.run([&] { kernel(args...); }); });
  }

 private:
  dim3 grid_, block_;
  size_t shared_;
  const void* stream_;
};

}  // namespace duet_emu

inline void __syncthreads() { duet_emu::sync_block(); }
inline int emu_lane() { return (int)(threadIdx.x % 32); }
template <class T>
T __shfl_sync(unsigned, T v, int src) {
  return duet_emu::shuffle(v, src & 31);
}
template <class T>
T __shfl_xor_sync(unsigned, T v, int mask) {
  return duet_emu::shuffle(v, (emu_lane() ^ mask) & 31);
}
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta) {
  const int src = emu_lane() + (int)delta;
  return duet_emu::shuffle(v, src < 32 ? src : emu_lane());
}
template <class T>
T __shfl_up_sync(unsigned, T v, unsigned delta) {
  const int src = emu_lane() - (int)delta;
  return duet_emu::shuffle(v, src >= 0 ? src : emu_lane());
}

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
// A product rounded on its own, never fused into an add (the device's round-to-nearest multiply).
inline float __fmul_rn(float a, float b) {
  volatile float p = a * b;
  return p;
}
template <class A, class B>
auto min(A a, B b) {
  return a < b ? a : b;
}
template <class A, class B>
auto max(A a, B b) {
  return a < b ? b : a;
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local  // per launching thread: ranks that are threads each have their own
