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

// "on-cpu-ns runqueue-ns timeslices\n" -> runqueue seconds; 0 when unreadable.
double read_runqueue_s(int fd) {
  if (fd < 0) return 0;
  char buf[96];
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  buf[n] = '\0';
  char* end = nullptr;
  std::strtoull(buf, &end, 10);  // time on a CPU
  if (end == buf) return 0;
  const char* field = end;
  const unsigned long long ns = std::strtoull(field, &end, 10);
  return end == field ? 0 : ns * 1e-9;
}

SchedstatFile& this_thread_file() {
  thread_local SchedstatFile file;
  return file;
}

}  // namespace

double thread_core_wait_s() { return read_runqueue_s(this_thread_file().fd); }

bool core_wait_available() { return this_thread_file().fd >= 0; }

}  // namespace duet::io
