#include "checkpoint/fence.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

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

}  // namespace

std::int64_t advance_fence(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw error(path, "cannot open");
  try {
    lock(fd, F_WRLCK, path);
    const std::int64_t next = read_generation(fd, path) + 1;
    const std::string text = std::to_string(next) + "\n";
    // Rewritten in place under the lock: readers take the shared lock, so none sees it half
    // written; fsync so a crash of this host does not hand out the number again.
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text.data(), text.size(), 0) != (ssize_t)text.size() || fsync(fd) != 0)
      throw error(path, "cannot write");
    ::close(fd);  // releases the lock
    return next;
  } catch (...) {
    ::close(fd);
    throw;
  }
}

std::int64_t read_fence(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  try {
    lock(fd, F_RDLCK, path);
    const std::int64_t g = read_generation(fd, path);
    ::close(fd);
    return g;
  } catch (...) {
    ::close(fd);
    throw;
  }
}

FenceGuard::FenceGuard(const Fence& fence) {
  if (fence.generation <= 0 || fence.path.empty()) return;
  fd_ = ::open(fence.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw error(fence.path, "cannot open");
  std::int64_t now = 0;
  try {  // a constructor that throws runs no destructor: close here (rank 0 checks every step)
    lock(fd_, F_RDLCK, fence.path);
    now = read_generation(fd_, fence.path);
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
  if (now != fence.generation) {
    ::close(fd_);
    fd_ = -1;
    throw Fenced("fenced: this attempt (generation " + std::to_string(fence.generation) +
                             ") was superseded by generation " + std::to_string(now) + " (" + fence.path +
                             "); a newer attempt of the run owns its checkpoints");
  }
}

FenceGuard::~FenceGuard() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace duet::ckpt
