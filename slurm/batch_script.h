#pragma once
// The batch script `duet submit` writes to <run dir>/job.sbatch: #SBATCH options for the
// allocation, then one line that execs the job's supervisor (`duet launch`) so that Slurm's
// signals (--signal=B:USR1@N, the SIGTERM of scancel or of the time limit) reach it directly.
//
// A pure function of its inputs. Every value a user supplies is either checked against what
// Slurm accepts for it (the #SBATCH lines: sbatch does not read them through a shell, so they
// cannot be quoted) or single-quoted in the script body, where the shell reads it as one
// inert word: "$(...)", backticks, quotes, ';' and newlines stay text.

#include <string>
#include <vector>

namespace duet::slurm {

struct BatchJob {
  std::string job_name;        // the run's name: [A-Za-z0-9._-]+
  std::string run_dir;         // <run.dir>/<run.name>, absolute; slurm-%j.out and .err go there
  std::string work_dir;        // where `duet launch` starts (relative paths of the config resolve there)
  int nodes = 1;
  int ranks_per_node = 1;      // --ntasks-per-node
  int gpus_per_node = 0;       // 0 = no --gpus-per-node line
  int cpus_per_task = 1;
  std::string time;            // "" = the partition's default; else minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]
  std::string partition;       // "" = the cluster's default
  std::string account;         // "" = the user's default
  int signal_seconds = 120;    // --signal=B:USR1@N: the supervisor checkpoints and requeues
  bool requeue = true;         // --requeue
  bool no_kill = false;        // --no-kill: the allocation survives a node failure (elastic shrink)
  std::vector<std::string> command;  // the job's command, e.g. {"/path/duet", "launch", "--config", ...}
  std::vector<std::pair<std::string, std::string>> env;  // exported before the command
};

// Throws std::invalid_argument naming the field ("--partition", "run.name", ...), the value
// and what is allowed.
std::string make_batch_script(const BatchJob& job);

// `value` as one single-quoted shell word: 'it'\''s' — inert whatever it holds.
std::string shell_quote(const std::string& value);

// Slurm's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
bool valid_slurm_time(const std::string& t);
// The length of such a time in seconds ("30" is 30 minutes); -1 when it is not one.
long slurm_time_seconds(const std::string& t);

}  // namespace duet::slurm
