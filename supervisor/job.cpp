#include "supervisor/job.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace duet::supervisor {

namespace {

ExitStatus decode(int status) {
  ExitStatus s;
  if (WIFEXITED(status)) s.code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) s.signal = WTERMSIG(status), s.code = 128 + s.signal;
  return s;
}

}  // namespace

Job::Job(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& env) {
  if (argv.empty()) throw std::invalid_argument("Job: empty command");
  int ready[2];  // close-on-exec pipe: an exec failure is reported through it
  if (pipe2(ready, O_CLOEXEC) != 0) throw std::runtime_error(std::string("Job: pipe: ") + std::strerror(errno));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error(std::string("Job: fork: ") + std::strerror(errno));
  if (pid_ == 0) {
    setpgid(0, 0);
    for (int s : {SIGINT, SIGTERM, SIGUSR1, SIGPIPE}) ::signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    close(ready[0]);
    execvp(args[0], args.data());
    const int err = errno;
    (void)!write(ready[1], &err, sizeof err);
    _exit(127);
  }
  setpgid(pid_, pid_);  // also here: no race with a signal sent before the child ran
  close(ready[1]);
  int err = 0;
  const ssize_t n = read(ready[0], &err, sizeof err);
  close(ready[0]);
  if (n == (ssize_t)sizeof err) {
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(err));
  }
}

Job::~Job() {
  if (pid_ > 0 && (!status_ || group_alive())) kill_all(0.0);
}

std::optional<ExitStatus> Job::poll() {
  if (status_) return status_;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) status_ = decode(status);
  return status_;
}

void Job::signal(int sig) {
  if (pid_ > 0) ::kill(-pid_, sig);
}

bool Job::group_alive() const {
  if (pid_ <= 0 || (::kill(-pid_, 0) != 0 && errno != EPERM)) return false;
  // kill() also finds zombies, which only their parent (or init, for orphans) can reap: a
  // group of zombies is gone as far as the job is concerned. /proc/<pid>/stat says who is.
  DIR* proc = opendir("/proc");
  if (!proc) return true;
  bool alive = false;
  while (dirent* d = readdir(proc)) {
    if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + d->d_name + "/stat");
    std::string stat;
    std::getline(f, stat);
    const auto close_paren = stat.rfind(')');  // the command name may hold spaces and ')'
    if (close_paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(close_paren + 2));
    char state = 0;
    long ppid = 0, pgrp = 0;
    if (rest >> state >> ppid >> pgrp && pgrp == pid_ && state != 'Z' && state != 'X') {
      alive = true;
      break;
    }
  }
  closedir(proc);
  return alive;
}

ExitStatus Job::kill_all(double grace_s) {
  using Clock = std::chrono::steady_clock;
  const auto give_up = Clock::now() + std::chrono::duration<double>(grace_s);
  signal(SIGTERM);
  signal(SIGCONT);  // a stopped process cannot act on SIGTERM
  while (Clock::now() < give_up && (poll(), group_alive())) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  signal(SIGKILL);
  while (!poll()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // Members that outlived the leader (a rank that mpirun did not reap) are not our children:
  // SIGKILL needs no cooperation, so wait only until they are gone from the process table.
  for (int i = 0; i < 5000 && group_alive(); ++i) {
    signal(SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return *status_;
}

}  // namespace duet::supervisor
