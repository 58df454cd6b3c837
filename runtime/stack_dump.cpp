#include "runtime/stack_dump.h"

#include <dirent.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <boost/stacktrace.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

namespace duet::runtime {

namespace {

// SIGRTMIN..SIGRTMIN+2 are glibc's own; Open MPI and oneDNN use none of the real-time range.
int dump_signal() { return SIGRTMIN + 5; }

constexpr std::size_t kFrames = 128;
struct Slot {
  std::atomic<bool> done{false};
  std::size_t bytes = 0;
  char frames[kFrames * sizeof(void*) + 64];
};
Slot g_slot;                        // one thread at a time is asked (write_all_stacks is serial)
std::atomic<Slot*> g_target{nullptr};

void on_dump_signal(int) {
  Slot* s = g_target.load();
  if (!s || s->done.load()) return;
  const int saved = errno;
  const std::size_t n = boost::stacktrace::safe_dump_to(s->frames, sizeof s->frames);
  s->bytes = n * sizeof(void*);
  s->done.store(true);
  errno = saved;
}

std::string read_small(const std::string& path) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), {});
  while (!s.empty() && (s.back() == '\n' || s.back() == 0)) s.pop_back();
  return s;
}

std::vector<long> thread_ids() {
  std::vector<long> out;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') out.push_back(std::atol(e->d_name));
    closedir(d);
  }
  return out;
}

}  // namespace

void install_stack_dump_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Loads the unwinder now: the first unwind allocates, which a handler must not do.
    char warm[256];
    boost::stacktrace::safe_dump_to(warm, sizeof warm);
    struct sigaction sa {};
    sa.sa_handler = on_dump_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(dump_signal(), &sa, nullptr);
  });
}

int write_all_stacks(const std::string& path, const std::string& title, double deadline_s) {
  install_stack_dump_handler();
  const long self = syscall(SYS_gettid);
  const pid_t pid = getpid();
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(deadline_s);
  std::ostringstream out;
  out << title << "\n";
  int answered = 0;
  for (long tid : thread_ids()) {
    if (tid == self) continue;
    const std::string task = "/proc/self/task/" + std::to_string(tid);
    out << "\n== thread " << tid << " (" << read_small(task + "/comm") << ")\n";
    g_slot.done = false, g_slot.bytes = 0;
    g_target = &g_slot;
    bool ok = syscall(SYS_tgkill, pid, tid, dump_signal()) == 0;
    while (ok && !g_slot.done.load() && std::chrono::steady_clock::now() < end) std::this_thread::yield();
    ok = ok && g_slot.done.load();
    g_target = nullptr;
    if (!ok) {  // blocked the signal, or the deadline passed: what the kernel knows
      out << "   did not answer; " << read_small(task + "/stat") << "\n   wchan: " << read_small(task + "/wchan") << "\n";
      continue;
    }
    ++answered;
    const auto trace = boost::stacktrace::stacktrace::from_dump(g_slot.frames, g_slot.bytes);
    // The first frames are the handler and the signal trampoline; keep them: they are few
    // and show the signal arrived.
    for (std::size_t i = 0; i < trace.size(); ++i) {
      const auto& f = trace[i];
      char addr[32];
      std::snprintf(addr, sizeof addr, "%p", f.address());
      std::string name = f.name();
      out << "  #" << i << " " << addr << " " << (name.empty() ? "??" : name) << "\n";
    }
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << out.str();
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return answered;
}

}  // namespace duet::runtime
