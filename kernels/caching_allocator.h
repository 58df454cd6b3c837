#pragma once
// A caching allocator over a backend's raw allocator (after PyTorch's CUDA caching
// allocator, much simplified): a freed block goes to a free list of its size class and the
// next request of that class takes it back, so once a run has seen its largest shapes, steps
// allocate nothing from the device — cudaMallocManaged and cudaFree synchronise the whole
// device, and the model's MoE buffers change size every micro-batch.
//
// Size classes: four per power of two (…, 1, 1.25, 1.5, 1.75, 2, …) from 256 bytes, so a
// block wastes at most a fifth of itself. When the raw allocator fails, the cached blocks are
// returned to it and the request is tried once more. Thread-safe.

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

namespace duet::kernels {

// The class `bytes` falls in: the smallest class size ≥ bytes.
size_t size_class(size_t bytes);

// What alloc throws when neither the raw allocator nor the cap leaves room, the cache given
// back: the size asked for and what the allocator held, in its message.
class OutOfMemory : public std::bad_alloc {
 public:
  explicit OutOfMemory(std::string what) : what_(std::move(what)) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

class CachingAllocator {
 public:
  using RawAlloc = void* (*)(size_t bytes);  // nullptr or throws when out of memory
  using RawFree = void (*)(void* p);
  using OnFree = void* (*)();               // a token for the block's last use
  using BeforeReuse = void (*)(void* token);

  // On a device whose kernels run asynchronously, a freed block may still be read or written
  // by kernels queued before the free. on_free (may be nullptr) runs at free and returns a
  // token for that (the CUDA backend: an event on the freeing thread's stream);
  // before_reuse(token) runs before the block is handed out again or given back to the raw
  // allocator (the CUDA backend waits for the event, not for the whole device: runtime/
  // comm_nccl.h's receives may be pending there). After warm-up a run asks for no memory
  // (model/buffers.h), so this costs nothing in steady state.
  //
  // `cap`: the most bytes it holds from the raw allocator (live and cached), for raw memory that
  // does not run out by itself — CUDA's managed memory pages to the host past the device's, and
  // asking for more than the card has can hang it (kernels/cuda/backend.cu).
  CachingAllocator(RawAlloc raw_alloc, RawFree raw_free, OnFree on_free = nullptr, BeforeReuse before_reuse = nullptr,
                   size_t cap = SIZE_MAX)
      : raw_alloc_(raw_alloc), raw_free_(raw_free), on_free_(on_free), before_reuse_(before_reuse), cap_(cap) {}
  ~CachingAllocator();  // returns the cached blocks; live ones are their owners' to free
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  void* alloc(size_t bytes);  // nullptr for 0 bytes
  void free(void* p);         // free(nullptr) is a no-op; p must come from alloc()
  void release_cached();      // every cached block back to the raw allocator

  struct Stats {
    long raw_allocs = 0, raw_frees = 0, reuses = 0;
    size_t live_bytes = 0, cached_bytes = 0;  // in size classes
  };
  Stats stats() const;

 private:
  void* raw(size_t bytes);  // holds mu_

  RawAlloc raw_alloc_;
  RawFree raw_free_;
  OnFree on_free_;
  BeforeReuse before_reuse_;
  size_t cap_;
  mutable std::mutex mu_;
  struct Cached {
    void* block;
    void* token;  // on_free's
  };
  std::unordered_map<void*, size_t> live_;          // block → its class size
  std::map<size_t, std::vector<Cached>> free_;      // class size → cached blocks
  void give_back_cache();                           // holds mu_
  Stats stats_;
};

}  // namespace duet::kernels
