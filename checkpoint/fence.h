#pragma once
// Attempt fencing. Every launch of a run's ranks (an attempt) gets a generation number,
// larger than any before it, from a small file of the run (the fence). A rank of an older
// attempt can outlive its attempt — on a node cut off from the supervisor, or stopped and
// later continued — and must never commit a checkpoint over the newer attempt's work:
//
//   advance_fence(path)      the new attempt's owner (supervisor, or rank 0 of an unsupervised
//                            run): takes the file's exclusive lock, writes generation + 1
//   FenceGuard(fence)        commit_checkpoint: takes the shared lock, checks the file still
//                            holds this attempt's generation, and keeps the lock while the
//                            checkpoint is moved into place and `latest` is updated
//
// The locks are fcntl record locks (open file description locks), which NFS also honours, so
// once advance_fence returns no commit of an older generation can land, and a commit in
// progress finishes before the generation moves on. Each generation also stages its saves in
// its own directory (staging_path), so an old attempt's shards never mix with a new one's.

#include <cstdint>
#include <stdexcept>
#include <string>

namespace duet::ckpt {

struct Fence {
  std::string path;            // the fence file; created by advance_fence
  std::int64_t generation = 0; // this attempt's; 0 = no fencing
};

// Writes and returns the next generation (1 for a new file). Throws std::runtime_error naming
// the file when it cannot be locked or written.
std::int64_t advance_fence(const std::string& path);
// The generation the file holds now (0 when it does not exist).
std::int64_t read_fence(const std::string& path);

// What FenceGuard throws when a newer attempt has started ("fenced: ..."); a fence it cannot
// open or lock is a plain std::runtime_error.
struct Fenced : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Holds the shared lock while a commit completes; throws Fenced when a newer attempt has
// started, std::runtime_error when the fence cannot be read.
class FenceGuard {
 public:
  explicit FenceGuard(const Fence& fence);
  ~FenceGuard();
  FenceGuard(const FenceGuard&) = delete;
  FenceGuard& operator=(const FenceGuard&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace duet::ckpt
