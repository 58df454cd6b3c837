// kernels/caching_allocator.h: freed blocks are reused by requests of their size class, the
// raw allocator is called only for new peaks, and running out of memory returns the cache.
#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/caching_allocator.h"

namespace {

using duet::kernels::CachingAllocator;
using duet::kernels::OutOfMemory;
using duet::kernels::size_class;

long g_raw_live = 0;
int g_fail_next = 0;  // this many raw requests fail next (out of memory)

void* raw_alloc(size_t bytes) {
  if (g_fail_next > 0) return --g_fail_next, nullptr;
  ++g_raw_live;
  return std::malloc(bytes);
}
void raw_free(void* p) {
  --g_raw_live;
  std::free(p);
}

TEST(CachingAllocator, SizeClassesWasteAtMostAFifth) {
  EXPECT_EQ(size_class(1), 256u);
  EXPECT_EQ(size_class(256), 256u);
  EXPECT_EQ(size_class(257), 320u);  // 256 · 1.25
  EXPECT_EQ(size_class(512), 512u);
  EXPECT_EQ(size_class(513), 640u);
  EXPECT_EQ(size_class(1000), 1024u);
  for (size_t b = 1; b < 200000; b = b * 3 / 2 + 1) {
    const size_t c = size_class(b);
    EXPECT_GE(c, b);
    EXPECT_LE(c, std::max<size_t>(256, b + b / 4 + 1)) << b;
    EXPECT_EQ(size_class(c), c) << b;  // a class size is its own class
  }
}

TEST(CachingAllocator, AFreedBlockIsReusedByItsClassAndOnlyNewPeaksReachTheRawAllocator) {
  g_raw_live = 0;
  {
    CachingAllocator c(&raw_alloc, &raw_free);
    EXPECT_EQ(c.alloc(0), nullptr);
    void* a = c.alloc(1000);
    void* b = c.alloc(3000);
    c.free(a);
    c.free(b);
    EXPECT_EQ(c.alloc(1010), a);  // same class (1024)
    void* d = c.alloc(900);       // another class: a new block
    EXPECT_NE(d, a);
    EXPECT_EQ(c.alloc(2900), b);
    // A micro-batch's buffers, freed and made again with varying sizes: once every class has
    // been seen, nothing new is allocated.
    const long before = c.stats().raw_allocs;
    for (int round = 0; round < 20; ++round) {
      std::set<void*> blocks;
      for (size_t n : {100u, 5000u, 5100u, 70000u}) blocks.insert(c.alloc(n + round % 3));
      for (void* p : blocks) c.free(p);
    }
    EXPECT_EQ(c.stats().raw_allocs - before, 4);
    EXPECT_GT(c.stats().reuses, 70);
    c.free(a);
    c.free(b);
    c.free(d);
    EXPECT_EQ(c.stats().live_bytes, 0u);
    int stranger = 0;
    EXPECT_THROW(c.free(&stranger), std::logic_error);  // not one of its blocks
  }
  EXPECT_EQ(g_raw_live, 0);  // the destructor returned the cache
}

// On a device a freed block may still be in use by queued kernels: the free marks its last
// use, and a reuse (or giving it back) first waits for that mark — its own, not another's.
TEST(CachingAllocator, AReusedBlockWaitsForItsOwnLastUseANewOneDoesNot) {
  static std::vector<long> marks, waited;
  static long next_mark = 0;
  g_raw_live = 0;
  {
    CachingAllocator c(&raw_alloc, &raw_free, [] { marks.push_back(++next_mark); return (void*)next_mark; },
                       [](void* token) { waited.push_back((long)token); });
    void* a = c.alloc(5000);
    void* big = c.alloc(50000);
    EXPECT_TRUE(marks.empty());
    c.free(a);
    c.free(big);
    EXPECT_EQ(marks, (std::vector<long>{1, 2}));
    EXPECT_TRUE(waited.empty());
    EXPECT_EQ(c.alloc(5000), a);
    EXPECT_EQ(waited, (std::vector<long>{1}));  // a's mark, not big's
    void* b = c.alloc(5000);  // the class's list is empty: a new block, no wait
    EXPECT_EQ(waited.size(), 1u);
    c.free(a);
    c.free(b);
  }
  EXPECT_EQ(waited.size(), 4u);  // the destructor waited for each cached block before returning it
  EXPECT_EQ(g_raw_live, 0);
}

TEST(CachingAllocator, OutOfMemoryReturnsTheCacheAndRetriesOnce) {
  g_raw_live = 0;
  CachingAllocator c(&raw_alloc, &raw_free);
  c.free(c.alloc(4096));
  c.free(c.alloc(8192));
  EXPECT_EQ(g_raw_live, 2);  // both cached
  g_fail_next = 1;           // the device is full once: the cache goes back, the retry succeeds
  void* p = c.alloc(100000);
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(g_raw_live, 1);
  EXPECT_EQ(c.stats().cached_bytes, 0u);
  EXPECT_EQ(c.stats().raw_frees, 2);
  g_fail_next = 2;  // full even without the cache
  EXPECT_THROW(c.alloc(200000), std::bad_alloc);
  g_fail_next = 0;
  c.free(p);
}

// Raw memory that never runs out by itself (CUDA's managed memory pages to the host) is held
// within a cap: past it the cache goes back first, then the allocation fails with a message
// that says what was asked, what is in use and the cap — and the raw allocator is not asked.
TEST(CachingAllocator, ACapBoundsWhatItHoldsLiveAndCached) {
  g_raw_live = 0;
  CachingAllocator c(&raw_alloc, &raw_free, nullptr, nullptr, /*cap=*/20480);
  void* a = c.alloc(8192);
  c.free(c.alloc(4096));  // cached: 12288 held
  void* b = c.alloc(4096);  // the cached block
  EXPECT_EQ(c.stats().raw_allocs, 2);
  void* d = c.alloc(4000);  // a block of 4096: 16384 held
  EXPECT_EQ(g_raw_live, 3);
  c.free(b);
  void* e = c.alloc(5000);  // a class of 5120: 21504 > 20480 until the cached 4096 goes back
  EXPECT_EQ(c.stats().raw_frees, 1);
  EXPECT_EQ(c.stats().live_bytes, 8192u + 4096u + 5120u);
  c.free(d);  // cached: 13312 live, 4096 cached
  try {
    c.alloc(8000);  // a block of 8192: 13312 + 8192 > 20480 even with the cache given back
    ADD_FAILURE() << "no out of memory";
  } catch (const OutOfMemory& oom) {
    EXPECT_NE(std::string(oom.what()).find("a block of 8192 bytes asked with 13312 bytes in use; the cap is 20480 bytes"),
              std::string::npos)
        << oom.what();
  }
  EXPECT_EQ(c.stats().raw_allocs, 4);  // the refused one never reached the raw allocator
  EXPECT_EQ(c.stats().raw_frees, 1);   // nor was the cache given back for nothing
  EXPECT_EQ(c.stats().cached_bytes, 4096u);
  for (void* p : {a, e}) c.free(p);
}

}  // namespace
