// The run directory's lock: format, the takeover rules, taking it and renewing its lease.
#include "io/run_lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace duet::io {
namespace fs = std::filesystem;

namespace {

constexpr const char* kLockFile = "run.lock";

std::string utc_text(std::int64_t t) {
  const std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string random_token() {
  std::random_device rd;
  const std::uint64_t x = (std::uint64_t(rd()) << 32) ^ rd() ^ (std::uint64_t(getpid()) << 16);
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
  return buf;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Seconds since the file's mtime (the lease's last renewal); 0 when it cannot be read.
double lease_age(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  const double mtime = st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  return now - mtime;
}

bool pid_alive(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

void write_all(int fd, const std::string& text, const std::string& path) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("cannot write the run lock '" + path + "': " + std::strerror(errno));
    done += static_cast<std::size_t>(n);
  }
  ::fsync(fd);
}

}  // namespace

std::string format_lock(const LockHolder& h) {
  return "duet run lock\npid " + std::to_string(h.pid) + "\nhost " + h.host + "\nstarted " + std::to_string(h.started) +
         "\nstart_text " + utc_text(h.started) + "\ntoken " + h.token + "\nslurm_job_id " +
         (h.slurm_job_id.empty() ? "-" : h.slurm_job_id) + "\n";
}

std::optional<LockHolder> parse_lock(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string line;
  if (!std::getline(in, line) || line != "duet run lock") return std::nullopt;
  LockHolder h;
  bool pid = false, host = false, started = false, token = false, slurm = false;
  while (std::getline(in, line)) {
    const auto sp = line.find(' ');
    if (sp == std::string::npos) continue;
    const std::string key = line.substr(0, sp), value = line.substr(sp + 1);
    try {
      if (key == "pid") h.pid = std::stol(value), pid = true;
      else if (key == "host") h.host = value, host = true;
      else if (key == "started") h.started = std::stoll(value), started = true;
      else if (key == "token") h.token = value, token = true;
      else if (key == "slurm_job_id") h.slurm_job_id = value == "-" ? "" : value, slurm = true;
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  if (!(pid && host && started && token && slurm)) return std::nullopt;
  return h;
}

std::string describe_holder(const LockHolder& h) {
  std::string s = "PID " + std::to_string(h.pid) + " on host " + h.host + ", started " + utc_text(h.started);
  if (!h.slurm_job_id.empty()) s += ", Slurm job " + h.slurm_job_id;
  return s;
}

LockContext this_process_context(double lease_s) {
  LockContext c;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) c.host = host;
  if (const char* j = std::getenv("SLURM_JOB_ID")) c.slurm_job_id = j;
  c.lease_s = lease_s;
  return c;
}

LockVerdict judge_lock(const LockHolder& h, double lease_age_s, const LockContext& here,
                       const std::function<bool(long pid)>& alive) {
  if (!h.slurm_job_id.empty() && h.slurm_job_id == here.slurm_job_id) return LockVerdict::same_job;
  if (h.host == here.host) return alive(h.pid) ? LockVerdict::held : LockVerdict::dead_pid;
  return lease_age_s > here.lease_s ? LockVerdict::lease_expired : LockVerdict::held;
}

std::string RunLock::path_in(const std::string& dir) { return (fs::path(dir) / kLockFile).string(); }

RunLock::RunLock(std::string path, LockHolder holder, double lease_s) : path_(std::move(path)), holder_(std::move(holder)) {
  const double interval = std::max(0.5, lease_s / 4);
  renewer_ = std::thread([this, interval] { renew_loop(interval); });
}

RunLock::~RunLock() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (renewer_.joinable()) renewer_.join();
  const auto now = parse_lock(read_text(path_));
  std::error_code ec;
  if (now && now->token == holder_.token) fs::remove(path_, ec);
}

void RunLock::renew_loop(double interval_s) {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::duration<double>(interval_s), [&] { return stop_; }))
    ::utimensat(AT_FDCWD, path_.c_str(), nullptr, 0);  // the lease: mtime = now
}

std::unique_ptr<RunLock> RunLock::acquire(const std::string& dir, double lease_s,
                                          const std::function<void(std::string_view)>& say) {
  const std::string path = path_in(dir);
  const LockContext here = this_process_context(lease_s);
  LockHolder me;
  me.pid = static_cast<long>(::getpid());
  me.host = here.host;
  me.started = static_cast<std::int64_t>(std::time(nullptr));
  me.token = random_token();
  me.slurm_job_id = here.slurm_job_id;
  const std::string text = format_lock(me);
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      try {
        write_all(fd, text, path);
      } catch (...) {
        ::close(fd);
        ::unlink(path.c_str());
        throw;
      }
      ::close(fd);
      return std::unique_ptr<RunLock>(new RunLock(path, me, lease_s));
    }
    if (errno != EEXIST) throw std::runtime_error("cannot create the run lock '" + path + "': " + std::strerror(errno));
    const double age = lease_age(path);
    const auto holder = parse_lock(read_text(path));
    std::string why;
    if (!holder) {
      // Being written right now, or left half-written by a crash: give a writer a moment.
      if (age < 5) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        continue;
      }
      why = "the lock file is unreadable";
    } else {
      switch (judge_lock(*holder, age, here, pid_alive)) {
        case LockVerdict::held:
          throw RunLockHeld("run directory '" + dir + "' is in use by another job: " + describe_holder(*holder) +
                            " (lock file " + path + ", renewed " + std::to_string((long long)age) +
                            " s ago). Wait for it to end, or give this run another run.name");
        case LockVerdict::same_job: why = "the same Slurm job " + holder->slurm_job_id + ", restarted"; break;
        case LockVerdict::dead_pid: why = "its process is gone"; break;
        case LockVerdict::lease_expired:
          why = "its lease was not renewed for " + std::to_string((long long)age) + " s > run.lock_lease_s = " +
                std::to_string((long long)lease_s);
          break;
      }
      why = "from " + describe_holder(*holder) + " (" + why + ")";
    }
    // Take over: replace the file atomically, then check that our token is the one there
    // (another job taking over at the same moment may have won).
    const std::string tmp = path + "." + me.token + ".tmp";
    const int tfd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (tfd < 0) throw std::runtime_error("cannot write '" + tmp + "': " + std::strerror(errno));
    try {
      write_all(tfd, text, tmp);
    } catch (...) {
      ::close(tfd);
      ::unlink(tmp.c_str());
      throw;
    }
    ::close(tfd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      throw std::runtime_error("cannot take over the run lock '" + path + "': " + std::strerror(err));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto now = parse_lock(read_text(path));
    if (now && now->token == me.token) {
      if (say) say("run lock: taking over " + path + " " + why);
      return std::unique_ptr<RunLock>(new RunLock(path, me, lease_s));
    }
  }
  const auto holder = parse_lock(read_text(path));
  throw RunLockHeld("run directory '" + dir + "' is in use by another job" +
                    (holder ? ": " + describe_holder(*holder) : std::string()) + " (lock file " + path + ")");
}

void RunLock::check_held(const std::string& dir, const std::string& token) {
  const std::string path = path_in(dir);
  const auto holder = parse_lock(read_text(path));
  if (!holder || holder->token != token)
    throw std::runtime_error("the run lock '" + path + "' is not held by the `duet launch` that started this rank" +
                             (holder ? std::string(" (held by ") + describe_holder(*holder) + ")" : std::string(" (no lock)")));
}

}  // namespace duet::io
