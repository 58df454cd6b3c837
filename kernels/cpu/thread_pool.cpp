#include "kernels/cpu/thread_pool.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

namespace duet::cpu {

namespace {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free,
              "futex words are std::atomic<uint32_t>");

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1'000'000'000 + ts.tv_nsec;
}

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

void futex_wake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

std::atomic<int64_t> g_forced_spin{-1};
// The latest judgement of any thread: a new thread (the pipeline's second executor starts every
// step) starts from it instead of from "free" and its first window of long spins.
std::atomic<bool> g_last_contended{false};
// Set in a child process forked after the pool started: the helpers do not exist there.
std::atomic<bool> g_forked{false};

// One thread's view of whether it shares its core: /proc/thread-self/schedstat's second
// field is the time the thread spent runnable but not running (ns). Read at most once per
// window, at the start of a wait (one pread, ~2.5 µs).
class ContentionMeter {
 public:
  ContentionMeter() {
    fd_ = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    // Without the statistics (a kernel built without them) nothing can be judged: spin short,
    // which is never worse than a stall.
    contended_ = fd_ < 0 || g_last_contended.load(std::memory_order_relaxed);
    if (fd_ >= 0) sample(&last_wall_, &last_delay_, &last_run_);
  }
  ~ContentionMeter() {
    if (fd_ >= 0) close(fd_);
  }

  int64_t spin_budget_ns() {
    const int64_t forced = g_forced_spin.load(std::memory_order_relaxed);
    if (forced >= 0) return forced;
    if (fd_ >= 0) {
      const int64_t wall = now_ns();
      if (wall - last_wall_ >= kContentionWindowNs) {
        int64_t w, delay, run;
        if (sample(&w, &delay, &run)) {
          // Share of the time the thread wanted to run (running or runnable) that it waited:
          // time asleep between regions does not dilute it.
          const double waited = (double)(delay - last_delay_), wanted = waited + (double)(run - last_run_);
          contended_ = wanted > 0 && waited > kContendedShare * wanted;
          g_last_contended.store(contended_, std::memory_order_relaxed);
          last_wall_ = w, last_delay_ = delay, last_run_ = run;
        }
      }
    }
    return contended_ ? kSpinShortNs : kSpinLongNs;
  }
  bool contended() const { return contended_; }

 private:
  bool sample(int64_t* wall, int64_t* delay, int64_t* running) {
    char buf[96];
    const ssize_t n = pread(fd_, buf, sizeof buf - 1, 0);
    if (n <= 0) return false;
    buf[n] = 0;
    unsigned long long run = 0, wait = 0;
    if (std::sscanf(buf, "%llu %llu", &run, &wait) != 2) return false;
    *wall = now_ns();
    *delay = (int64_t)wait;
    *running = (int64_t)run;
    return true;
  }
  int fd_ = -1;
  int64_t last_wall_ = 0, last_delay_ = 0, last_run_ = 0;
  bool contended_ = false;
};

thread_local bool t_in_parallel = false;

ContentionMeter& meter() {
  thread_local ContentionMeter m;
  return m;
}

// Waits until ready() holds: spins for this thread's budget (or until parked() says to stop),
// then sleeps on `word` (a futex) with `sleeping` raised so that whoever changes `word` knows
// to wake it. Returns whether it slept.
template <class Ready, class Parked>
bool wait_until(Ready ready, Parked parked, std::atomic<uint32_t>& word, std::atomic<uint32_t>& sleeping) {
  const int64_t budget = meter().spin_budget_ns();  // also where the meter takes its samples
  if (ready()) return false;
  if (budget > 0) {
    const int64_t start = now_ns();
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        if (ready()) return false;
        cpu_relax();
      }
      if (parked() || now_ns() - start >= budget) break;
    }
  }
  sleeping.store(1, std::memory_order_seq_cst);
  for (;;) {
    const uint32_t seen = word.load(std::memory_order_seq_cst);
    if (ready()) break;
    futex_wait(&word, seen);  // returns at once if `word` is no longer `seen`
  }
  sleeping.store(0, std::memory_order_relaxed);
  return true;
}

class Pool;
thread_local Pool* t_pool = nullptr;  // the calling thread's pool, once it has one
thread_local bool t_pool_gone = false;  // its pool was destroyed (thread exit): run inline

class Pool {
 public:
  Pool() {
    static const int registered = pthread_atfork(nullptr, nullptr, [] { g_forked.store(true); });
    (void)registered;
  }
  ~Pool() {
    t_pool = nullptr, t_pool_gone = true;
    if (g_forked.load()) {  // the helpers were not copied into this process: nothing to join
      for (auto& h : helpers_) (void)h.release();
      return;
    }
    stop_.store(true, std::memory_order_seq_cst);
    for (auto& h : helpers_) {
      h->go.fetch_add(1, std::memory_order_seq_cst);
      futex_wake(&h->go);
    }
    for (auto& h : helpers_) h->thread.join();
  }

  void run(int k, void (*fn)(void*, int, int), void* ctx) {
    while ((int)helpers_.size() < k - 1) start_helper((int)helpers_.size() + 1);
    fn_ = fn, ctx_ = ctx, k_ = k;
    remaining_.store((uint32_t)(k - 1), std::memory_order_relaxed);
    ++regions_;
    for (int t = 1; t < k; ++t) {
      Helper& h = *helpers_[t - 1];
      h.go.fetch_add(1, std::memory_order_seq_cst);  // publishes fn_, ctx_, k_, remaining_
      if (h.sleeping.load(std::memory_order_seq_cst)) {
        futex_wake(&h.go);
        ++wakes_;
      }
    }
    t_in_parallel = true;
    fn(ctx, 0, k);
    t_in_parallel = false;
    wait_until([&] { return remaining_.load(std::memory_order_acquire) == 0; }, [] { return false; }, remaining_,
               caller_sleeping_);
  }

  void park() { park_.fetch_add(1, std::memory_order_relaxed); }

  PoolStats stats() const { return {regions_, wakes_, false}; }

 private:
  struct alignas(64) Helper {
    std::atomic<uint32_t> go{0};
    std::atomic<uint32_t> sleeping{0};
    std::thread thread;
  };

  void start_helper(int t) {
    auto h = std::make_unique<Helper>();
    Helper* hp = h.get();
    h->thread = std::thread([this, hp, t] { helper_loop(*hp, t); });
    pthread_setname_np(h->thread.native_handle(), "duet-compute");
    helpers_.push_back(std::move(h));
  }

  void helper_loop(Helper& h, int t) {
    t_in_parallel = true;  // anything a helper runs is inside a region
    uint32_t seen = 0;
    uint32_t park_seen = park_.load(std::memory_order_relaxed);
    for (;;) {
      wait_until([&] { return h.go.load(std::memory_order_acquire) != seen; },
                 [&] { return park_.load(std::memory_order_relaxed) != park_seen; }, h.go, h.sleeping);
      seen = h.go.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_acquire)) return;
      fn_(ctx_, t, k_);
      // Before the caller can see this region end: a park() after it is one this wait sees.
      park_seen = park_.load(std::memory_order_relaxed);
      if (remaining_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
          caller_sleeping_.load(std::memory_order_seq_cst))
        futex_wake(&remaining_);
    }
  }

  std::vector<std::unique_ptr<Helper>> helpers_;
  void (*fn_)(void*, int, int) = nullptr;
  void* ctx_ = nullptr;
  int k_ = 1;
  alignas(64) std::atomic<uint32_t> remaining_{0};
  std::atomic<uint32_t> caller_sleeping_{0};
  std::atomic<bool> stop_{false};
  std::atomic<uint32_t> park_{0};
  int64_t regions_ = 0, wakes_ = 0;
};

Pool& pool() {
  thread_local Pool p;
  t_pool = &p;
  return p;
}

}  // namespace

void parallel_run(int k, void (*fn)(void*, int, int), void* ctx) noexcept {
  k = std::min(k, usable_cpus());
  if (k <= 1 || t_in_parallel || t_pool_gone || g_forked.load(std::memory_order_relaxed)) {
    const bool was = t_in_parallel;  // a helper's stays true
    t_in_parallel = true;
    fn(ctx, 0, 1);
    t_in_parallel = was;
    return;
  }
  pool().run(k, fn, ctx);
}

void park_compute_threads() {
  if (t_pool) t_pool->park();
}

bool in_parallel() { return t_in_parallel; }

int usable_cpus() {
  // Once per thread (a helper inherits its creator's mask). duet launch binds a rank before it
  // starts, so all of a rank's threads see the same mask and split the same way.
  thread_local const int n = [] {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1, (int)std::thread::hardware_concurrency());
  }();
  return n;
}

PoolStats pool_stats() {
  PoolStats s = pool().stats();
  (void)meter().spin_budget_ns();  // a sample, if a window has passed
  s.contended = meter().contended();
  return s;
}

void set_pool_spin_for_testing(int64_t ns) { g_forced_spin.store(ns, std::memory_order_relaxed); }

}  // namespace duet::cpu
