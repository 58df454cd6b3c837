#include "kernels/caching_allocator.h"

#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>

namespace duet::kernels {

size_t size_class(size_t bytes) {
  constexpr size_t kMin = 256;
  if (bytes <= kMin) return kMin;
  size_t power = kMin;
  while (power * 2 < bytes) power *= 2;  // power < bytes ≤ 2·power
  const size_t quarter = power / 4;
  return power + (bytes - power + quarter - 1) / quarter * quarter;
}

CachingAllocator::~CachingAllocator() { release_cached(); }

void* CachingAllocator::raw(size_t bytes) {
  auto fits = [&](size_t held) { return held <= cap_ && bytes <= cap_ - held; };
  auto attempt = [&]() -> void* {
    if (!fits(stats_.live_bytes + stats_.cached_bytes)) return nullptr;
    try {
      return raw_alloc_(bytes);
    } catch (const std::bad_alloc&) {
      return nullptr;
    }
  };
  void* p = attempt();
  // Out of memory: give the cache back and try once more — unless even an empty cache would
  // leave the request past the cap. Then it fails at once: giving back frees with cudaFree on
  // a GPU, which waits for the whole device (a receive posted ahead included: streams.h).
  const bool cache_may_help = fits(stats_.live_bytes);
  if (!p && cache_may_help) {
    give_back_cache();
    p = attempt();
  }
  if (!p) {
    auto size = [](size_t b) {
      char s[32];
      if (b >= (size_t)1 << 30)
        std::snprintf(s, sizeof s, "%.2f GiB", b / 1073741824.0);
      else if (b >= (size_t)1 << 20)
        std::snprintf(s, sizeof s, "%.1f MiB", b / 1048576.0);
      else
        std::snprintf(s, sizeof s, "%zu bytes", b);
      return std::string(s);
    };
    throw OutOfMemory("out of memory: a block of " + size(bytes) + " asked with " + size(stats_.live_bytes) +
                      " in use; " + (cache_may_help ? std::string("the raw allocator refused") : "the cap is " + size(cap_)));
  }
  ++stats_.raw_allocs;
  return p;
}

void* CachingAllocator::alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t size = size_class(bytes);
  Cached reused{nullptr, nullptr};
  {
    std::lock_guard<std::mutex> lock(mu_);
    void* p = nullptr;
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      reused = it->second.back();
      it->second.pop_back();
      p = reused.block;
      stats_.cached_bytes -= size;
      ++stats_.reuses;
    } else {
      p = raw(size);
    }
    live_.emplace(p, size);
    stats_.live_bytes += size;
    if (!reused.block) return p;
  }
  // The block's last use may still be running: wait for it without holding the lock, so other
  // threads' allocations do not wait too. The block is live already: nobody else gets it.
  if (before_reuse_) before_reuse_(reused.token);
  return reused.block;
}

void CachingAllocator::free(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) throw std::logic_error("CachingAllocator::free: a pointer it did not allocate");
  const size_t size = it->second;
  live_.erase(it);
  stats_.live_bytes -= size;
  free_[size].push_back({p, on_free_ ? on_free_() : nullptr});
  stats_.cached_bytes += size;
}

void CachingAllocator::give_back_cache() {
  for (auto& [size, blocks] : free_)
    for (const Cached& c : blocks) {
      if (before_reuse_) before_reuse_(c.token);
      raw_free_(c.block), ++stats_.raw_frees, stats_.cached_bytes -= size;
    }
  free_.clear();
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  give_back_cache();
}

CachingAllocator::Stats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace duet::kernels
