#include "slurm/batch_script.h"

#include <regex>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace duet::slurm {

namespace {

// Names Slurm gives partitions, accounts and jobs without surprises; nothing a shell or
// sbatch's own #SBATCH reader would treat specially.
bool plain_name(const std::string& s) {
  static const std::regex re("[A-Za-z0-9._-]+");
  return std::regex_match(s, re);
}

// Absolute paths of the characters that survive an #SBATCH line unquoted ('%' is Slurm's
// pattern character, so it is not among them).
bool plain_path(const std::string& s) {
  static const std::regex re("/[A-Za-z0-9._/+,=@:-]*");
  return std::regex_match(s, re);
}

void require(bool ok, const std::string& field, const std::string& value, const std::string& allowed) {
  if (!ok) throw std::invalid_argument(field + " '" + value + "': " + allowed);
}

}  // namespace

std::string shell_quote(const std::string& v) {
  std::string out = "'";
  for (char c : v) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

bool valid_slurm_time(const std::string& t) {
  static const std::regex re("[0-9]+|[0-9]+:[0-9]{1,2}|[0-9]+:[0-9]{1,2}:[0-9]{1,2}|[0-9]+-[0-9]+(:[0-9]{1,2}(:[0-9]{1,2})?)?");
  return std::regex_match(t, re);
}

long slurm_time_seconds(const std::string& t) {
  if (!valid_slurm_time(t) || t.size() > 16) return -1;  // no number of it overflows a long
  std::vector<long> f;  // the numbers, in order
  long days = 0;
  std::string rest = t;
  const auto dash = t.find('-');
  if (dash != std::string::npos) days = std::stol(t.substr(0, dash)), rest = t.substr(dash + 1);
  std::stringstream in(rest);
  for (std::string part; std::getline(in, part, ':');) f.push_back(std::stol(part));
  if (dash != std::string::npos) {  // D-HH[:MM[:SS]]
    f.resize(3, 0);
    return ((days * 24 + f[0]) * 60 + f[1]) * 60 + f[2];
  }
  if (f.size() == 1) return f[0] * 60;             // minutes
  if (f.size() == 2) return f[0] * 60 + f[1];      // MM:SS
  return (f[0] * 60 + f[1]) * 60 + f[2];           // HH:MM:SS
}

std::string make_batch_script(const BatchJob& j) {
  require(plain_name(j.job_name), "run.name", j.job_name,
          "a job name holds only letters, digits, '.', '_' and '-' under Slurm");
  require(plain_path(j.run_dir), "run.dir/run.name", j.run_dir,
          "an absolute path of letters, digits and . _ / + , = @ : - (it is written into #SBATCH --output)");
  require(!j.work_dir.empty() && j.work_dir.find('\n') == std::string::npos && j.work_dir[0] == '/',
          "working directory", j.work_dir, "an absolute path without newlines");
  require(j.nodes >= 1, "--nodes", std::to_string(j.nodes), "at least 1");
  require(j.ranks_per_node >= 1, "--ranks-per-node", std::to_string(j.ranks_per_node), "at least 1");
  require(j.gpus_per_node >= 0, "--gpus-per-node", std::to_string(j.gpus_per_node), "0 or more");
  require(j.cpus_per_task >= 1, "--cpus-per-task", std::to_string(j.cpus_per_task), "at least 1");
  require(j.time.empty() || slurm_time_seconds(j.time) >= 0, "--time", j.time,
          "minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS");
  require(j.partition.empty() || plain_name(j.partition), "--partition", j.partition,
          "letters, digits, '.', '_' and '-'");
  require(j.account.empty() || plain_name(j.account), "--account", j.account, "letters, digits, '.', '_' and '-'");
  require(j.signal_seconds >= 0 && j.signal_seconds <= 65535, "--signal-seconds", std::to_string(j.signal_seconds),
          "0 to 65535");
  // A warning due at or before the job starts would stop every start at its first step and
  // requeue it, forever.
  // (A time of 0 is Slurm's "no limit".)
  require(j.time.empty() || j.signal_seconds == 0 || slurm_time_seconds(j.time) == 0 ||
              j.signal_seconds < slurm_time_seconds(j.time),
          "--signal-seconds",
          std::to_string(j.signal_seconds),
          "must be shorter than the time limit (--time " + j.time + " = " + std::to_string(slurm_time_seconds(j.time)) +
              " s), with room for start-up, steps and a checkpoint");
  require(!j.command.empty(), "command", "", "the job needs a command");
  for (const auto& [k, v] : j.env) {
    static const std::regex name("[A-Za-z_][A-Za-z0-9_]*");
    require(std::regex_match(k, name), "environment variable", k, "a shell variable name");
  }

  std::ostringstream s;
  s << "#!/bin/bash\n"
       "# Written by `duet submit`; submit again with: sbatch "
    << j.run_dir << "/job.sbatch\n";
  s << "#SBATCH --job-name=" << j.job_name << "\n";
  s << "#SBATCH --nodes=" << j.nodes << "\n";
  s << "#SBATCH --ntasks-per-node=" << j.ranks_per_node << "\n";
  s << "#SBATCH --cpus-per-task=" << j.cpus_per_task << "\n";
  if (j.gpus_per_node > 0) s << "#SBATCH --gpus-per-node=" << j.gpus_per_node << "\n";
  if (!j.time.empty()) s << "#SBATCH --time=" << j.time << "\n";
  if (!j.partition.empty()) s << "#SBATCH --partition=" << j.partition << "\n";
  if (!j.account.empty()) s << "#SBATCH --account=" << j.account << "\n";
  if (j.requeue) s << "#SBATCH --requeue\n";
  // B: the signal goes to the batch shell only — which is `duet launch` after the exec below.
  if (j.signal_seconds > 0) s << "#SBATCH --signal=B:USR1@" << j.signal_seconds << "\n";
  s << "#SBATCH --open-mode=append\n";
  s << "#SBATCH --output=" << j.run_dir << "/slurm-%j.out\n";
  s << "#SBATCH --error=" << j.run_dir << "/slurm-%j.err\n";
  if (j.no_kill) s << "#SBATCH --no-kill\n";
  s << "set -eu\n";
  s << "echo \"duet job ${SLURM_JOB_ID:-} on ${SLURM_JOB_NODELIST:-}, start $(( ${SLURM_RESTART_COUNT:-0} + 1 ))"
       " (restart count ${SLURM_RESTART_COUNT:-0}), $(date -u +%FT%TZ)\"\n";
  for (const auto& [k, v] : j.env) s << "export " << k << "=" << shell_quote(v) << "\n";
  s << "cd " << shell_quote(j.work_dir) << "\n";
  s << "exec";
  for (const auto& a : j.command) s << ' ' << shell_quote(a);
  s << "\n";
  return s.str();
}

}  // namespace duet::slurm
