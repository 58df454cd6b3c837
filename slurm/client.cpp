#include "slurm/client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "slurm/hostlist.h"

namespace duet::slurm {

namespace {

std::string joined(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// Runs argv; throws naming the command and Slurm's words unless it exits 0.
std::string checked(const std::vector<std::string>& argv, double timeout_s = 60) {
  const CommandOutput r = run_command(argv, timeout_s);
  if (r.exit_code != 0)
    throw std::runtime_error("`" + joined(argv) + "` failed (exit " + std::to_string(r.exit_code) +
                             (r.exit_code == 124 ? ", timed out" : "") + "): " + trimmed(r.err + r.out));
  return r.out;
}

}  // namespace

CommandOutput run_command(const std::vector<std::string>& argv, double timeout_s) {
  CommandOutput r;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);  // a timeout kills the command and whatever it started
    dup2(out[1], 1), dup2(err[1], 2);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(out[1]), close(err[1]);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  bool timed_out = false;
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      kill(-pid, SIGKILL);
      break;
    }
    if (poll(fds, 2, (int)std::min<long long>(left.count(), 1000)) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) (i == 0 ? r.out : r.err).append(buf, n);
      else if (n == 0 || errno != EINTR) close(fds[i].fd), fds[i].fd = -1, --open_fds;
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) close(f.fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = timed_out ? 124 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::optional<Allocation> current_allocation() {
  const char* id = std::getenv("SLURM_JOB_ID");
  const char* nodes = std::getenv("SLURM_JOB_NODELIST");
  if (!id || !*id || !nodes || !*nodes) return std::nullopt;
  Allocation a;
  a.job_id = id;
  a.nodes = hostlist_expand(nodes);
  if (const char* rc = std::getenv("SLURM_RESTART_COUNT")) a.restart_count = std::atoi(rc);
  return a;
}

std::string submit(const std::string& script_path, const std::vector<std::string>& sbatch_args) {
  std::vector<std::string> argv = {"sbatch", "--parsable"};
  argv.insert(argv.end(), sbatch_args.begin(), sbatch_args.end());
  argv.push_back(script_path);
  std::string id = trimmed(checked(argv));
  if (const auto semi = id.find(';'); semi != std::string::npos) id.resize(semi);  // "id;cluster"
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
    throw std::runtime_error("`" + joined(argv) + "` printed '" + id + "', not a job id");
  return id;
}

std::map<std::string, std::string> job_fields(const std::string& job_id) {
  const std::string out = checked({"scontrol", "show", "job", "-o", job_id});
  // One line of space-separated Key=Value; values themselves hold no spaces except the
  // last fields (Command=, WorkDir=, StdErr=...), which paths in our run directories avoid.
  std::map<std::string, std::string> f;
  std::istringstream in(out);
  std::string word, last;
  while (in >> word) {
    const auto eq = word.find('=');
    if (eq == std::string::npos || eq == 0) {
      if (!last.empty()) f[last] += " " + word;
      continue;
    }
    last = word.substr(0, eq);
    f[last] = word.substr(eq + 1);
  }
  return f;
}

std::string job_state(const std::string& job_id) {
  const CommandOutput r = run_command({"squeue", "-h", "-j", job_id, "-o", "%T"});
  if (r.exit_code == 0 && !trimmed(r.out).empty()) return trimmed(r.out);
  try {
    return job_fields(job_id)["JobState"];
  } catch (const std::exception&) {
    return "";
  }
}

void cancel(const std::string& job_id, const std::string& signal, bool batch_only) {
  std::vector<std::string> argv = {"scancel"};
  if (!signal.empty()) argv.push_back("--signal=" + signal);
  if (batch_only) argv.push_back("--batch");
  argv.push_back(job_id);
  checked(argv);
}

std::string requeue(const std::string& job_id, const std::vector<std::string>& exclude) {
  // The job's exclusions so far (the user's --exclude, an earlier start's lost nodes) stay:
  // `scontrol update ExcNodeList=` replaces the list.
  std::set<std::string> all(exclude.begin(), exclude.end());
  if (!exclude.empty()) {
    try {  // best effort: the requeue matters more than the list
      const std::string before = job_fields(job_id)["ExcNodeList"];
      if (!before.empty() && before != "(null)")
        for (const auto& n : hostlist_expand(before)) all.insert(n);
    } catch (const std::exception&) {
    }
  }
  checked({"scontrol", "requeue", job_id});
  // Only a pending job's exclusions can change: requeue first.
  if (all.empty()) return "";
  const std::string list = hostlist_compress({all.begin(), all.end()});
  try {
    checked({"scontrol", "update", "JobId=" + job_id, "ExcNodeList=" + list});
  } catch (const std::exception& e) {
    return "the job is requeued, but its excluded nodes could not be set to " + list + ": " + e.what();
  }
  return "";
}

std::map<std::string, std::string> node_states(const std::vector<std::string>& nodes) {
  std::map<std::string, std::string> states;
  if (nodes.empty()) return states;
  std::istringstream in(checked({"scontrol", "show", "node", "-o", hostlist_compress(nodes)}));
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string w, name, state;
    while (words >> w) {
      if (w.rfind("NodeName=", 0) == 0) name = w.substr(9);
      else if (w.rfind("State=", 0) == 0) state = w.substr(6);
    }
    if (!name.empty()) states[name] = state;
  }
  return states;
}

int distinct_hosts(const std::vector<std::string>& nodes) {
  if (nodes.empty()) return 0;
  const CommandOutput r = run_command({"scontrol", "show", "node", "-o", hostlist_compress(nodes)});
  if (r.exit_code != 0) return (int)nodes.size();
  std::set<std::string> hosts;
  int named = 0;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    for (std::string w; words >> w;)
      if (w.rfind("NodeHostName=", 0) == 0) hosts.insert(w.substr(13)), ++named;
  }
  return named == (int)nodes.size() ? (int)hosts.size() : (int)nodes.size();
}

bool node_unusable(const std::string& s) {
  for (const char* bad : {"DOWN", "DRAIN", "FAIL", "NOT_RESPONDING", "*", "POWER", "UNKNOWN"})
    if (s.find(bad) != std::string::npos) return true;
  return s.empty();
}

std::vector<std::string> live_nodes(const std::string& job_id) {
  auto f = job_fields(job_id);
  const auto nodes = hostlist_expand(f["NodeList"] == "(null)" ? "" : f["NodeList"]);
  const auto states = node_states(nodes);
  std::vector<std::string> live;
  for (const auto& n : nodes)
    if (auto it = states.find(n); it != states.end() && !node_unusable(it->second)) live.push_back(n);
  return live;
}

std::vector<std::string> failed_probe(const std::vector<std::string>& nodes, const std::vector<std::string>& probe,
                                      double timeout_s) {
  std::vector<int> ok(nodes.size(), 0);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < nodes.size(); ++i)
    threads.emplace_back([&, i] {
      std::vector<std::string> argv = {"srun", "--nodes=1", "--ntasks=1", "--nodelist=" + nodes[i], "--overlap",
                                       "--quiet", "--kill-on-bad-exit=1"};
      argv.insert(argv.end(), probe.begin(), probe.end());
      ok[i] = run_command(argv, timeout_s).exit_code == 0;
    });
  for (auto& t : threads) t.join();
  std::vector<std::string> failed;
  for (size_t i = 0; i < nodes.size(); ++i)
    if (!ok[i]) failed.push_back(nodes[i]);
  return failed;
}

bool srun_has_pmix() {
  try {
    const CommandOutput r = run_command({"srun", "--mpi=list"}, 10);
    return r.exit_code == 0 && (r.out + r.err).find("pmix") != std::string::npos;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace duet::slurm
