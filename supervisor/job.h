#pragma once
// One attempt of a job as a process tree in its own process group: the supervisor starts it
// (mpirun or srun and, below it, the ranks), watches it without blocking, and kills it whole
// — nothing it started is left behind, whatever state its processes are in.

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace duet::supervisor {

struct ExitStatus {
  int code = 0;    // exit code when it exited
  int signal = 0;  // the signal that ended it, 0 when it exited
  bool ok() const { return code == 0 && signal == 0; }
};

class Job {
 public:
  // Starts argv[0] (looked up in PATH) with `env` added to this process's environment, as the
  // leader of a new process group. Throws std::runtime_error naming the program when it cannot
  // be started.
  Job(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& env = {});
  ~Job();  // kills the whole group if it is still there
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  int pid() const { return pid_; }
  // The leader's exit status once it has ended (non-blocking); nullopt while it runs.
  std::optional<ExitStatus> poll();
  // Sends sig to every process of the group.
  void signal(int sig);
  // SIGTERM to the group, up to grace_s for every member to go, then SIGKILL; returns when no
  // process of the group is left (the leader reaped). Returns the leader's status.
  ExitStatus kill_all(double grace_s);
  // Whether any process of the group still exists.
  bool group_alive() const;

 private:
  int pid_ = -1;
  std::optional<ExitStatus> status_;
};

}  // namespace duet::supervisor
