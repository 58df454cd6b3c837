#include "io/core_wait.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

namespace duet::io {
namespace {

// The thread's schedstat file, opened on first use and closed when the thread ends (the
// engine starts a helper thread every step: a leaked descriptor per step would add up).
struct SchedstatFile {
  int fd = ::open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
  ~SchedstatFile() {
    if (fd >= 0) ::close(fd);
  }
};

// "on-cpu-ns runqueue-ns timeslices\n" -> seconds; zeros when unreadable.
ThreadTimes read_times(int fd) {
  if (fd < 0) return {};
  char buf[96];
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return {};
  buf[n] = '\0';
  char* end = nullptr;
  const unsigned long long on_cpu = std::strtoull(buf, &end, 10);
  if (end == buf) return {};
  const char* field = end;
  const unsigned long long queued = std::strtoull(field, &end, 10);
  if (end == field) return {};
  return {on_cpu * 1e-9, queued * 1e-9};
}

SchedstatFile& this_thread_file() {
  thread_local SchedstatFile file;
  return file;
}

}  // namespace

ThreadTimes thread_times() { return read_times(this_thread_file().fd); }

double thread_core_wait_s() { return thread_times().core_wait_s; }

bool core_wait_available() { return this_thread_file().fd >= 0; }

}  // namespace duet::io
