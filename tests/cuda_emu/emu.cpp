// The host emulation's launch (emu.h) and the emulated CUDA backend's table (backend.h).
#include "tests/cuda_emu/backend.h"

#include "kernels/caching_allocator.h"

#include <sys/mman.h>

#include <boost/context/fiber.hpp>
#include <cuda_runtime.h>  // the stand-in (include/)

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/ops.h"  // the translated ones: namespace duet::cuda_emu
#include "kernels/cuda/streams.h"
#include "kernels/cuda/timing.h"
#include "tests/cuda_emu/emu.h"

namespace duet_emu {

namespace {

// A block's CUDA threads are fibers (Boost.Context: a switch is a few nanoseconds, no system
// call, where ucontext's swapcontext changes the signal mask) on the launching host thread:
// each runs until
// it waits at a barrier or returns, and the scheduler lets a barrier go when every live thread
// of its warp (a shuffle) or block (__syncthreads) waits there. A thread that has returned no
// longer holds a barrier up, as a finished warp on the device. A block whose threads wait at
// different barriers can never go on: that is a kernel bug, reported, not a hang.
constexpr size_t kStackBytes = 256 * 1024;

enum class State { Ready, AtWarp, AtBlock, Done };

constexpr size_t kGuardBytes = 256;
constexpr unsigned char kGuard = 0x5A;

struct Fiber {
  boost::context::fiber self;  // resumes this CUDA thread (empty once it returned)
  boost::context::fiber back;  // inside the thread: resumes the scheduler
  State state = State::Ready;
};

// A stack of the pool, lent to Boost.Context, which does not free it.
struct LentStack {
  void* base;
  size_t size;
  boost::context::stack_context allocate() {
    boost::context::stack_context sc;
    sc.size = size;
    sc.sp = static_cast<char*>(base) + size;  // stacks grow down
    return sc;
  }
  void deallocate(boost::context::stack_context&) noexcept {}
};

// Stacks, reused by every launch of the host thread (mapped, so untouched pages cost nothing).
struct Stacks {
  std::vector<void*> stacks;
  void* get(size_t i) {
    while (stacks.size() <= i) {
      void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) throw std::runtime_error("emulated launch: no memory for a thread's stack");
      stacks.push_back(p);
    }
    return stacks[i];
  }
  ~Stacks() {
    for (void* p : stacks) munmap(p, kStackBytes);
  }
};

struct Block {
  std::vector<Fiber> fibers;
  unsigned current = 0;
  const std::function<void()>* kernel = nullptr;
  std::vector<uint64_t> slots[2];  // one per thread, for shuffles: alternate ones in turn
  std::vector<unsigned> generation;  // per thread: shuffles so far
  std::vector<unsigned char> memory;
  std::exception_ptr error;  // the first exception a thread threw
};

thread_local Block* t_block = nullptr;

void wait_at(State where) {
  Block& b = *t_block;
  Fiber& f = b.fibers[b.current];
  f.state = where;
  f.back = std::move(f.back).resume();
}

void set_thread_index(unsigned t) {
  threadIdx = dim3(t % blockDim.x, t / blockDim.x % blockDim.y, t / (blockDim.x * blockDim.y));
}

// Runs one block to its end.
void run_block(Block& b, unsigned threads) {
  for (unsigned pass = 0;; ++pass) {
    for (unsigned t = 0; t < threads; ++t) {
      if (b.fibers[t].state != State::Ready) continue;
      b.current = t;
      set_thread_index(t);
      b.fibers[t].self = std::move(b.fibers[t].self).resume();
      if (b.error) std::rethrow_exception(b.error);
    }
    // Everyone waits or is done. Warps whose live threads all wait at a shuffle go first.
    bool released = false, any_live = false, all_at_block = true;
    for (unsigned w = 0; w * 32 < threads; ++w) {
      const unsigned end = std::min(threads, (w + 1) * 32);
      bool live = false, all_at_warp = true;
      for (unsigned t = w * 32; t < end; ++t) {
        const State s = b.fibers[t].state;
        if (s == State::Done) continue;
        live = true;
        if (s != State::AtWarp) all_at_warp = false;
        if (s != State::AtBlock) all_at_block = false;
      }
      any_live |= live;
      if (live && all_at_warp) {
        for (unsigned t = w * 32; t < end; ++t)
          if (b.fibers[t].state == State::AtWarp) b.fibers[t].state = State::Ready;
        released = true;
      }
    }
    if (!any_live) return;
    if (released) continue;
    if (!all_at_block)
      throw std::logic_error("emulated kernel: the threads of a block wait at different barriers (a deadlock on a GPU)");
    for (auto& f : b.fibers)
      if (f.state == State::AtBlock) f.state = State::Ready;
  }
}

unsigned flat_thread() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

}  // namespace

uint64_t exchange(uint64_t v, int src_lane) {
  // One barrier per shuffle: a lane writes its next value into the other set of slots, and it
  // cannot come back to this set before every lane has passed the next shuffle's barrier,
  // i.e. has read this one.
  // Reading a lane that does not exist, or that did not make this shuffle (it returned or
  // took another branch), is undefined on a device: an error here, not a stale value.
  const unsigned t = flat_thread(), warp = t / 32;
  const unsigned g = t_block->generation[t]++;
  std::vector<uint64_t>& slots = t_block->slots[g % 2];
  slots[t] = v;
  wait_at(State::AtWarp);
  const unsigned src = warp * 32 + (unsigned)src_lane;
  if (src >= slots.size())
    throw std::logic_error("emulated shuffle: lane " + std::to_string(src_lane) + " of warp " + std::to_string(warp) +
                           " is not in this block of " + std::to_string(slots.size()) + " threads");
  if (t_block->generation[src] <= g)
    throw std::logic_error("emulated shuffle: thread " + std::to_string(t) + " reads thread " + std::to_string(src) +
                           ", which did not make this shuffle (it returned or took another branch)");
  return slots[src];
}

void sync_block() { wait_at(State::AtBlock); }

namespace {
std::mutex g_shared_mu;
std::map<const void*, size_t> g_shared_allowed;  // kernel → bytes allowed above the default
}  // namespace

void allow_shared(const void* kernel, int bytes) {
  std::lock_guard<std::mutex> lock(g_shared_mu);
  g_shared_allowed[kernel] = bytes > 0 ? (size_t)bytes : 0;
}

void check_shared(const void* kernel, size_t bytes) {
  if (bytes <= kDefaultSharedBytes) return;
  size_t allowed = kDefaultSharedBytes;
  {
    std::lock_guard<std::mutex> lock(g_shared_mu);
    auto it = g_shared_allowed.find(kernel);
    if (it != g_shared_allowed.end()) allowed = std::max(allowed, it->second);
  }
  if (bytes > allowed || bytes > kMaxSharedBytes)
    throw std::logic_error("emulated launch: " + std::to_string(bytes) + " bytes of dynamic shared memory, " +
                           (bytes > kMaxSharedBytes ? "more than a block can have"
                                                    : "over 48 KiB without cudaFuncSetAttribute allowing it"));
}

void* dynamic_shared_bytes() { return t_block->memory.data(); }

// ---- streams --------------------------------------------------------------------------------

struct Stream {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> work;
  long queued = 0, done = 0;  // pieces (under mu)
  bool busy = false;          // a thread runs piece `done` (under mu)
  bool owner_gone = false;    // a thread's default stream whose thread ended (under mu)
  std::exception_ptr error;   // the first piece that threw: every later wait rethrows it (under mu)
};

namespace {

std::mutex& registry_mu() {
  static auto* m = new std::mutex;  // never destroyed: thread-local streams end after main's statics
  return *m;
}
// Every stream whose work may still have to run: cudaDeviceSynchronize runs it all.
std::vector<StreamRef>& registry() {
  static auto* r = new std::vector<StreamRef>;
  return *r;
}

struct ThreadStream {
  StreamRef s = std::make_shared<Stream>();
  ThreadStream() {
    std::lock_guard lock(registry_mu());
    auto& r = registry();
    // Streams of ended threads leave once their work has run.
    std::erase_if(r, [](const StreamRef& x) {
      std::lock_guard l(x->mu);
      return x->owner_gone && x->done == x->queued;
    });
    r.push_back(s);
  }
  ~ThreadStream() {
    std::lock_guard lock(s->mu);
    s->owner_gone = true;
  }
};

}  // namespace

StreamRef stream_of(const void* cuda_stream) {
  // 0 (the legacy stream, per-thread under --default-stream per-thread), 1 (cudaStreamLegacy)
  // and 2 (cudaStreamPerThread): the calling thread's. The stand-in creates no other streams.
  if (reinterpret_cast<uintptr_t>(cuda_stream) > 2)
    throw std::logic_error("emulated CUDA: a stream the emulation did not make");
  thread_local ThreadStream t;
  return t.s;
}

long enqueue(const StreamRef& s, std::function<void()> work) {
  std::lock_guard lock(s->mu);
  s->work.push_back(std::move(work));
  return ++s->queued;
}

namespace {
std::atomic<long> g_launches{0}, g_blas_calls{0};
}  // namespace
void count_launch() { g_launches.fetch_add(1, std::memory_order_relaxed); }
void count_blas_call() { g_blas_calls.fetch_add(1, std::memory_order_relaxed); }
Queued queued_work() { return {g_launches.load(), g_blas_calls.load()}; }

long queued(const StreamRef& s) {
  std::lock_guard lock(s->mu);
  return s->queued;
}

bool reached(const StreamRef& s, long position) {
  std::lock_guard lock(s->mu);
  return s->done >= position;
}

// One thread runs a stream's pieces at a time; others wanting them wait for it. A piece that
// waits for another stream runs that one's pieces (or waits for the thread running them):
// no cycle can form, since a wait only names work queued before it.
void run_until(const StreamRef& s, long position) {
  std::unique_lock lock(s->mu);
  while (s->done < position) {
    // Sticky, as a CUDA context's errors: the stream runs nothing more, and every thread that
    // waits for it learns why (an NCCL stream's worker waiting here ends the process with it).
    if (s->error) std::rethrow_exception(s->error);
    if (s->busy) {
      s->cv.wait(lock);
      continue;
    }
    std::function<void()> piece = std::move(s->work.front());
    s->work.pop_front();
    s->busy = true;
    lock.unlock();
    std::exception_ptr error;
    try {
      piece();
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    s->busy = false;
    ++s->done;
    if (error && !s->error) s->error = error;
    s->cv.notify_all();
  }
  if (s->error) std::rethrow_exception(s->error);
}

namespace {
[[maybe_unused]] const bool g_hooked = [] {
  queue_on_thread_stream = [](std::function<void()> reach) -> std::function<void()> {
    StreamRef s = stream_of(nullptr);
    const long position = enqueue(s, std::move(reach));
    return [s, position] { run_until(s, position); };
  };
  return true;
}();
}  // namespace

void run_all() {
  std::vector<std::pair<StreamRef, long>> targets;
  {
    std::lock_guard lock(registry_mu());
    for (const StreamRef& s : registry()) targets.push_back({s, queued(s)});
  }
  for (auto& [s, position] : targets) run_until(s, position);
}

void check_block(dim3 block) {
  const unsigned threads = block.x * block.y * block.z;
  if (threads == 0 || threads > 1024)
    throw std::invalid_argument("emulated launch: a block of " + std::to_string(threads) + " threads");
}

void Launch::run(const std::function<void()>& kernel) const {
  check_block(block_);
  const unsigned threads = block_.x * block_.y * block_.z;
  thread_local Stacks stacks;
  Block block;
  block.kernel = &kernel;
  block.fibers.resize(threads);
  block.slots[0].resize(threads);
  block.slots[1].resize(threads);
  block.generation.resize(threads);
  block.memory.resize(shared_ + kGuardBytes);
  struct Current {  // t_block for this launch, also when a deadlock throws out of it
    explicit Current(Block* b) : outer(t_block) { t_block = b; }
    ~Current() { t_block = outer; }
    Block* outer;
  } current(&block);
  blockDim = block_;
  gridDim = grid_;
  for (unsigned bz = 0; bz < grid_.z; ++bz)
    for (unsigned by = 0; by < grid_.y; ++by)
      for (unsigned bx = 0; bx < grid_.x; ++bx) {
        blockIdx = dim3(bx, by, bz);
        // NaN, so that a kernel reading what it did not write fails; a guard past the end
        // catches writes beyond the launch's dynamic shared memory.
        std::fill(block.memory.begin(), block.memory.begin() + shared_, 0xFF);
        std::fill(block.memory.begin() + shared_, block.memory.end(), kGuard);
        std::fill(block.generation.begin(), block.generation.end(), 0u);
        for (unsigned t = 0; t < threads; ++t) {
          Fiber& f = block.fibers[t];
          f.state = State::Ready;
          f.self = boost::context::fiber(std::allocator_arg, LentStack{stacks.get(t), kStackBytes},
                                         [&block, t](boost::context::fiber&& scheduler) {
                                           Fiber& me = block.fibers[t];
                                           me.back = std::move(scheduler);
                                           // An exception cannot cross a fiber's edge: the
                                           // scheduler rethrows it (Boost's unwinding of a
                                           // destroyed fiber must pass).
                                           try {
                                             (*block.kernel)();
                                           } catch (const boost::context::detail::forced_unwind&) {
                                             throw;
                                           } catch (...) {
                                             if (!block.error) block.error = std::current_exception();
                                           }
                                           me.state = State::Done;
                                           return std::move(me.back);
                                         });
        }
        run_block(block, threads);
        for (size_t i = shared_; i < block.memory.size(); ++i)
          if (block.memory[i] != kGuard)
            throw std::logic_error("emulated kernel wrote past its " + std::to_string(shared_) +
                                   " bytes of dynamic shared memory");
      }
  threadIdx = blockIdx = blockDim = gridDim = dim3();
}

}  // namespace duet_emu


namespace duet::test {

const kernels::Backend& emulated_cuda_backend() {
  static const kernels::Backend b = [] {
    kernels::Backend e{};
    e.name = "cuda-emulated";
    // Through a cache with the CUDA backend's hooks (kernels/cuda/streams.cu, translated);
    // its raw allocator is the emulated device's (device_sync.h).
    static auto* cache = new kernels::CachingAllocator([](size_t bytes) { return duet_emu::device_alloc(bytes); },
                                                       [](void* p) { duet_emu::device_free(p); },
                                                       &cuda_emu::block_freed, &cuda_emu::block_reused);
    e.alloc = [](size_t bytes) { return cache->alloc(bytes); };
    e.free = [](void* p) { cache->free(p); };
    // As backend.cu's: a synchronous cudaMemcpy, after this thread's queued work.
    e.copy_to_host = e.copy_from_host = [](void* dst, const void* src, size_t n) {
      if (n) cudaMemcpy(dst, src, n, cudaMemcpyDefault);
    };
    e.synchronize = &cuda_emu::synchronize_thread;  // as backend.cu's: what it waits for matters with NCCL
    e.attention_saved_floats = &cuda_emu::attention_saved_floats;
    e.timing_begin = &cuda_emu::timing_begin;
    e.timing_end = &cuda_emu::timing_end;
    e.mark_create = &cuda_emu::mark_create, e.mark_record = &cuda_emu::mark_record;
    e.mark_synchronize = &cuda_emu::mark_synchronize, e.mark_destroy = &cuda_emu::mark_destroy;
#define DUET_EMU_SLOT(op) e.op = &cuda_emu::Timed<&cuda_emu::op>::call;
    DUET_BACKEND_OPS(DUET_EMU_SLOT)
#undef DUET_EMU_SLOT
    return e;
  }();
  return b;
}

long emulated_bf16_weight_casts() { return cuda_emu::bf16_weight_casts(); }
long emulated_bf16_weight_copies_held() { return cuda_emu::bf16_weight_copies_held(); }
EmulatedWork emulated_work_queued() {
  const duet_emu::Queued q = duet_emu::queued_work();
  return {q.launches, q.blas_calls};
}

const kernels::Backend& emulated_cuda_bf16_backend() {
  static const kernels::Backend b = [] {
    kernels::Backend e = emulated_cuda_backend();
    e.name = "cuda-bf16-emulated";
#define DUET_EMU_BF16_SLOT(op) e.op = &cuda_emu::Timed<&cuda_emu::op##_bf16>::call;
    DUET_CUDA_BF16_OPS(DUET_EMU_BF16_SLOT)
#undef DUET_EMU_BF16_SLOT
    e.weights_fixed = &cuda_emu::bf16_weights_fixed;
    return e;
  }();
  return b;
}

}  // namespace duet::test
