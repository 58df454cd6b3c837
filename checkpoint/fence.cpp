#include "checkpoint/fence.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace duet::ckpt {

namespace {

std::runtime_error error(const std::string& path, const std::string& what) {
  return std::runtime_error("fence '" + path + "': " + what + ": " + std::strerror(errno));
}

// Waits for a lock on the whole file, retried when a signal interrupts the wait. Open file
// description locks: owned by the open file, not the process, so two threads conflict like two
// processes, and closing another descriptor of the file elsewhere in the process does not drop
// the lock (as it would a classic POSIX record lock).
void lock(int fd, short type, const std::string& path) {
  struct flock fl {};
  fl.l_type = type, fl.l_whence = SEEK_SET, fl.l_start = 0, fl.l_len = 0, fl.l_pid = 0;
  while (fcntl(fd, F_OFD_SETLKW, &fl) != 0)
    if (errno != EINTR) throw error(path, "cannot lock");
}

// The generation the file holds (0 when empty); throws when it cannot be read.
std::int64_t read_generation(int fd, const std::string& path) {
  char buf[32] = {0};
  const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n < 0) throw error(path, "cannot read");
  return n > 0 ? std::strtoll(buf, nullptr, 10) : 0;
}

// An open fence file, closed when it goes out of scope (closing releases its lock), unless
// released to a FenceGuard that holds it.
struct OpenFence {
  int fd;
  ~OpenFence() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

}  // namespace

std::int64_t advance_fence(const std::string& path) {
  OpenFence f{::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)};
  if (f.fd < 0) throw error(path, "cannot open");
  lock(f.fd, F_WRLCK, path);
  const std::int64_t next = read_generation(f.fd, path) + 1;
  const std::string text = std::to_string(next) + "\n";
  // Rewritten in place under the lock: readers take the shared lock, so none sees it half
  // written; fsync so a crash of this host does not hand out the number again.
  if (ftruncate(f.fd, 0) != 0 || pwrite(f.fd, text.data(), text.size(), 0) != (ssize_t)text.size() || fsync(f.fd) != 0)
    throw error(path, "cannot write");
  return next;
}

std::int64_t read_fence(const std::string& path) {
  OpenFence f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return 0;
  lock(f.fd, F_RDLCK, path);
  return read_generation(f.fd, path);
}

FenceGuard::FenceGuard(const Fence& fence) {
  if (fence.generation <= 0 || fence.path.empty()) return;
  // Closed on every way out but success: rank 0 takes a guard every step.
  OpenFence f{::open(fence.path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw error(fence.path, "cannot open");
  lock(f.fd, F_RDLCK, fence.path);
  const std::int64_t now = read_generation(f.fd, fence.path);
  if (now != fence.generation)
    throw Fenced("fenced: this attempt (generation " + std::to_string(fence.generation) +
                 ") was superseded by generation " + std::to_string(now) + " (" + fence.path +
                 "); a newer attempt of the run owns its checkpoints");
  fd_ = f.release();
}

FenceGuard::~FenceGuard() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace duet::ckpt
