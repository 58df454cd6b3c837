#pragma once
// Helpers for end-to-end tests that drive the `duet` binary as a user would.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <vector>
#include <sstream>
#include <algorithm>
#include <string>
#include <sys/wait.h>

namespace duet::test {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline CommandResult run_duet(const std::string& args) {
  return run_command(std::string(DUET_BINARY) + " " + args);
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A fresh, empty directory for one test.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("duet-test-" + name + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// The "loss" values of a metrics.jsonl, as written (text, so comparisons can be bit-exact),
// in step order. metrics.jsonl is append-only across restarts: a step written again after a
// resume counts once, with its last line (io/run_records.h).
inline std::vector<std::string> loss_texts(const std::filesystem::path& metrics) {
  std::map<int, std::string> by_step;
  const std::regex step_re("\"step\":([0-9]+)"), loss_re("\"loss\":([^,}]+)");
  std::stringstream ss(read_file(metrics));
  for (std::string line; std::getline(ss, line);) {
    std::smatch step, loss;
    if (std::regex_search(line, step, step_re) && std::regex_search(line, loss, loss_re))
      by_step[std::stoi(step[1])] = loss[1];
  }
  std::vector<std::string> out;
  for (const auto& [s, text] : by_step) out.push_back(text);
  return out;
}

inline std::vector<double> loss_values(const std::filesystem::path& metrics) {
  std::vector<double> out;
  for (const auto& t : loss_texts(metrics)) out.push_back(std::stod(t));
  return out;
}

// "mpirun --oversubscribe -np N duet train", allowed to run as root; `wrapper` goes right
// before the launcher (e.g. "timeout 120 ").
inline std::string mpirun_train(int np, const std::string& wrapper = "") {
  return std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ") + wrapper + DUET_MPIEXEC +
         " --oversubscribe -np " + std::to_string(np) + " " + DUET_BINARY + " train";
}

// ---- supervised runs (duet launch) -------------------------------------------------------

// Each step's loss as written, the last line of a step winning (a restarted run repeats the
// steps after its checkpoint).
inline std::map<int, std::string> losses_by_step(const std::filesystem::path& metrics) {
  std::map<int, std::string> out;
  const std::regex re("\"step\":(\\d+),\"loss\":([^,}]+)");
  std::stringstream ss(read_file(metrics));
  for (std::string line; std::getline(ss, line);) {
    std::smatch m;
    if (std::regex_search(line, m, re)) out[std::stoi(m[1])] = m[2];
  }
  return out;
}

// Folders of runs' in-memory snapshots (checkpoint.memory) left under the memory folder.
inline int snapshot_folders(const std::filesystem::path& shm) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(shm, ec))
    if (e.path().filename().string().rfind("duet-", 0) == 0) ++n;
  return n;
}

// The "kind" of every record of events.jsonl, in order.
inline std::vector<std::string> event_kinds(const std::filesystem::path& events) {
  std::vector<std::string> out;
  const std::regex re("\"kind\": \"([a-z-]+)\"");
  std::stringstream ss(read_file(events));
  for (std::string line; std::getline(ss, line);) {
    std::smatch m;
    if (std::regex_search(line, m, re)) out.push_back(m[1]);
  }
  return out;
}

inline int count(const std::vector<std::string>& v, const std::string& s) { return (int)std::count(v.begin(), v.end(), s); }

// No process of this test's job is left (its run directory is in every rank's command line).
inline bool no_orphans(const std::filesystem::path& dir) {
  // "[.]" keeps the pattern from matching the shell that runs pgrep.
  return run_command("pgrep -f -- '--run[.]dir " + dir.string() + "'").output.empty();
}

}  // namespace duet::test
