#pragma once
// One job per run directory: <run dir>/run.lock names the job that owns the directory.
//
//   duet run lock
//   pid 41213
//   host node07
//   started 1764627601            unix seconds (and, for people, start_text)
//   start_text 2026-12-01 22:20:01 UTC
//   token 3f9c0a6e5d1b2c47        random; ranks of the job prove membership with it
//   slurm_job_id 81234            "-" outside Slurm
//
// The job's top process takes it before anything is written (`duet launch`, or a lone
// `duet train`; under a bare mpirun, rank 0) and a thread renews its lease (the file's mtime)
// every lease/4 seconds while the job lives. Ranks started by `duet launch` do not take it:
// launch passes the token (DUET_RUN_LOCK) and rank 0 checks that the file still holds it.
//
// A second job is refused, naming the holder. The lock is taken over, with a line saying so,
// when (judge_lock):
//   - the holder's Slurm job is ours (the same job restarted after a requeue, any host);
//   - the holder is on this host and its PID is gone;
//   - the holder is on another host and its lease was not renewed for run.lock_lease_s.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

namespace duet::io {

struct LockHolder {
  long pid = 0;
  std::string host;
  std::int64_t started = 0;  // unix seconds
  std::string token;
  std::string slurm_job_id;  // "" outside Slurm
  bool operator==(const LockHolder&) const = default;
};

std::string format_lock(const LockHolder& h);
// nullopt when the text is not a complete lock file (e.g. one being written).
std::optional<LockHolder> parse_lock(std::string_view text);
// "PID 41213 on host node07, started 2026-12-01 22:20:01 UTC"
std::string describe_holder(const LockHolder& h);

// What this process is, for judging a lock it finds.
struct LockContext {
  std::string host;
  std::string slurm_job_id;  // "" outside Slurm
  double lease_s = 60;       // run.lock_lease_s
};
LockContext this_process_context(double lease_s);

enum class LockVerdict { held, same_job, dead_pid, lease_expired };

// Pure: whether a lock held by `h` may be taken over. lease_age_s: seconds since the lease was
// last renewed; pid_alive: whether h.pid runs on this host (only asked when h.host is ours).
LockVerdict judge_lock(const LockHolder& h, double lease_age_s, const LockContext& here,
                       const std::function<bool(long pid)>& pid_alive);

// The refusal: a second job on a run directory that a live job holds.
struct RunLockHeld : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class RunLock {
 public:
  // Takes <dir>/run.lock (dir must exist). Throws RunLockHeld naming the holder, or
  // std::runtime_error naming the path when the file cannot be written. A takeover is told
  // through `say` ("run lock: taking over from PID … (its process is gone)").
  static std::unique_ptr<RunLock> acquire(const std::string& dir, double lease_s,
                                          const std::function<void(std::string_view)>& say = {});
  // Throws std::runtime_error unless <dir>/run.lock holds `token` (ranks under duet launch).
  static void check_held(const std::string& dir, const std::string& token);
  static std::string path_in(const std::string& dir);  // <dir>/run.lock

  ~RunLock();  // stops renewing; removes the file if it is still ours. Never throws.
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

  const std::string& token() const { return holder_.token; }
  const std::string& path() const { return path_; }

 private:
  RunLock(std::string path, LockHolder holder, double lease_s);
  void renew_loop(double interval_s);
  std::string path_;
  LockHolder holder_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread renewer_;
};

}  // namespace duet::io
