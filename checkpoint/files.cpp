// Durable, atomic file-system steps for the checkpoint commit protocol.
#include "checkpoint/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "checkpoint/hash.h"

namespace duet::ckpt::detail {
namespace fs = std::filesystem;
namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
  throw std::runtime_error("cannot " + what + " '" + path + "': " + std::strerror(err));
}

class Fd {
 public:
  Fd(const std::string& path, int flags, mode_t mode = 0644) : fd_(::open(path.c_str(), flags | O_CLOEXEC, mode)) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // close() can report a deferred write error (NFS); it must not be lost.
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

}  // namespace

void fsync_file(const std::string& path) {
  Fd fd(path, O_RDONLY);
  if (fd.get() < 0) fail("open for fsync", path, errno);
  if (::fsync(fd.get()) != 0) fail("fsync", path, errno);
}

void fsync_dir(const std::string& dir) {
  Fd fd(dir, O_RDONLY | O_DIRECTORY);
  if (fd.get() < 0) fail("open directory for fsync", dir, errno);
  if (::fsync(fd.get()) != 0) fail("fsync directory", dir, errno);
}

void write_file_durably(const std::string& path, std::string_view text) {
  const std::string tmp = path + ".tmp";
  {
    Fd fd(tmp, O_WRONLY | O_CREAT | O_TRUNC);
    if (fd.get() < 0) fail("create", tmp, errno);
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        ::unlink(tmp.c_str());  // do not leave a partial file on a full disk
        fail("write", tmp, err);
      }
      done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0 || fd.close() != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      fail("write", tmp, err);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("rename '" + tmp + "' to", path, err);
  }
}

std::string read_small_file(const std::string& path, std::size_t max_bytes) {
  Fd fd(path, O_RDONLY);
  if (fd.get() < 0) fail("read", path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail("stat", path, errno);
  if (!S_ISREG(st.st_mode)) throw std::runtime_error("cannot read '" + path + "': not a regular file");
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes)
    throw std::runtime_error("'" + path + "' is " + std::to_string(st.st_size) + " bytes, more than the " +
                             std::to_string(max_bytes) + " such a file can be");
  std::string out(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("read", path, errno);
    if (n == 0) break;  // shrank while reading
    done += static_cast<std::size_t>(n);
  }
  out.resize(done);
  return out;
}

FileDigest hash_file(const std::string& path) {
  Fd fd(path, O_RDONLY);
  if (fd.get() < 0) fail("open", path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail("stat", path, errno);
  FileDigest d;
  d.size = static_cast<std::uint64_t>(st.st_size);
  if (d.size == 0) {
    d.xxh64 = xxh64("", 0);
    return d;
  }
  // Hashing through a read-only mapping reads the page cache in place: a shard just written is
  // hashed without a second copy of its bytes.
  void* map = ::mmap(nullptr, d.size, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (map != MAP_FAILED) {
    ::madvise(map, d.size, MADV_SEQUENTIAL);
    d.xxh64 = xxh64(map, d.size);
    ::munmap(map, d.size);
    return d;
  }
  std::vector<char> buf(8u << 20);  // a file system without mmap: read it
  Xxh64 h;
  d.size = 0;
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("read", path, errno);
    if (n == 0) break;
    h.update(buf.data(), static_cast<std::size_t>(n));
    d.size += static_cast<std::uint64_t>(n);
  }
  d.xxh64 = h.digest();
  return d;
}

void replace_symlink(const std::string& target, const std::string& link) {
  const std::string tmp = link + ".tmp-" + std::to_string(::getpid());
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0) fail("create symlink", tmp, errno);
  if (::rename(tmp.c_str(), link.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("rename symlink '" + tmp + "' to", link, err);
  }
}

}  // namespace duet::ckpt::detail
