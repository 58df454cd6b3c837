// Choosing, locking and continuing run directories; the FINISHED marker; the metrics header.
#include "io/run_dir.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "io/metrics.h"
#include "io/resume_policy.h"

namespace duet::io {
namespace fs = std::filesystem;

namespace {

constexpr const char* kFinishedFile = "FINISHED";

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

std::string new_run_id() {
  std::random_device rd;
  const std::uint64_t x = (std::uint64_t(rd()) << 32) ^ rd() ^ (std::uint64_t(::getpid()) << 20) ^
                          static_cast<std::uint64_t>(std::time(nullptr));
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
  return buf;
}

bool run_finished(const std::string& run_dir) {
  std::error_code ec;
  return fs::exists(fs::path(run_dir) / kFinishedFile, ec);
}

void mark_run_finished(const std::string& run_dir, const RunConfig& cfg, int steps) {
  write_file_atomically(fs::path(run_dir) / kFinishedFile, "duet run " + cfg.run.id + " finished: step " +
                                                               std::to_string(steps) + " of " +
                                                               std::to_string(cfg.train.steps) + "\n");
}

namespace {
// Whether `cfg` asks for no more than the finished run in `dir` did: its own id (as every start
// of a Slurm job gives it), at most its steps, resuming allowed. A run asked to train on
// (more train.steps), or afresh, starts a new directory as any rerun of a finished run does.
bool asks_for_finished_run(const RunConfig& cfg, const fs::path& dir) {
  if (cfg.run.id.empty() || !cfg.checkpoint.resume) return false;
  try {
    const RunConfig done = parse_config(read_text(dir / "config.yaml"), {}, (dir / "config.yaml").string());
    return done.run.id == cfg.run.id && cfg.train.steps <= done.train.steps;
  } catch (const std::exception&) {
    return false;  // unreadable: not known to be this run
  }
}
}  // namespace

std::string why_not_continued(const RunConfig& cfg, const std::string& dir, RunConfig& existing) {
  const fs::path config_file = fs::path(dir) / "config.yaml";
  try {
    existing = parse_config(read_text(config_file), {}, config_file.string());
  } catch (const std::exception&) {
    return "has an unreadable config.yaml";
  }
  if (run_finished(dir)) return "holds a finished run (" + existing.run.id + ")";
  if (existing.run.id.empty()) return "holds a run without a run id (written before run lineages)";
  if (!cfg.run.id.empty() && cfg.run.id != existing.run.id)
    return "holds run " + existing.run.id + ", not run.id " + cfg.run.id;
  if (!cfg.checkpoint.resume) return "holds run " + existing.run.id + " and checkpoint.resume is false";
  return "";
}

RunClaim claim_run_dir(const RunConfig& cfg, const std::function<void(std::string_view)>& say) {
  const fs::path root = cfg.run.dir;
  const bool timestamped = cfg.run.name.empty();  // a fresh directory every time
  const std::string base = timestamped ? run_timestamp(std::time(nullptr)) : cfg.run.name;
  std::vector<std::string> skipped;  // "runs/tiny holds a finished run (id …)"
  for (int n = 1;; ++n) {
    const std::string name = n == 1 ? base : base + "-" + std::to_string(n);
    const fs::path dir = root / name;
    std::error_code ec;
    if (fs::exists(dir, ec)) {
      if (timestamped) continue;
      if (run_finished(dir.string())) {  // finished runs are never written again: no lock needed
        if (asks_for_finished_run(cfg, dir)) {
          RunClaim done;
          done.dir = dir.string(), done.id = cfg.run.id, done.finished = true;
          std::string marker = read_text(dir / kFinishedFile);
          while (!marker.empty() && marker.back() == '\n') marker.pop_back();
          done.notes.push_back("run " + cfg.run.id + " in " + done.dir + " has finished (" + marker +
                               "): nothing to do");
          return done;
        }
        skipped.push_back(dir.string() + " holds a finished run");
        continue;
      }
    }
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir))
      throw std::runtime_error("cannot create run directory '" + dir.string() + "'" +
                               (ec ? ": " + ec.message() : std::string(": a file of that name exists")));
    RunClaim claim;
    claim.dir = dir.string();
    claim.lock = RunLock::acquire(claim.dir, cfg.run.lock_lease_s, say);
    RunConfig resolved = cfg;
    resolved.run.name = name;
    const fs::path config_file = dir / "config.yaml";
    if (fs::exists(config_file, ec)) {
      RunConfig existing;
      if (const std::string why = why_not_continued(cfg, claim.dir, existing); !why.empty()) {
        skipped.push_back(claim.dir + " " + why);
        continue;  // claim.lock goes with claim
      }
      // The same run, stopped early: continue it, if the new config may.
      check_resume(existing, cfg, "run " + existing.run.id + " in " + claim.dir + " (its config.yaml)");
      resolved.run.id = existing.run.id;
      claim.continued = true;
      claim.notes.push_back("continuing run " + resolved.run.id + " in " + claim.dir);
    } else {
      resolved.run.id = cfg.run.id.empty() ? new_run_id() : cfg.run.id;
      claim.notes.push_back("run " + resolved.run.id + " in " + claim.dir);
    }
    for (const auto& s : skipped) claim.notes.insert(claim.notes.end() - 1, s + ": this run starts in " + claim.dir);
    claim.id = resolved.run.id;
    write_file_atomically(config_file, to_yaml(resolved));
    return claim;
  }
}

RunClaim join_launched_run() {
  RunClaim claim;
  const char* token = std::getenv(kEnvRunLock);
  const char* dir = std::getenv(kEnvRunDir);
  const char* id = std::getenv(kEnvRunId);
  if (!token || !*token) return claim;
  if (!dir || !id) throw std::runtime_error(std::string(kEnvRunLock) + " is set without " + kEnvRunDir + " and " + kEnvRunId);
  RunLock::check_held(dir, token);
  claim.dir = dir;
  claim.id = id;
  return claim;
}

JsonLine run_header(const RunConfig& cfg, int start_step) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  JsonLine j;
  j.add("event", "run").add("run_id", cfg.run.id).add("run_name", cfg.run.name).add("start_step", start_step);
  j.add("pid", static_cast<long>(::getpid())).add("host", host).add("time", when);
  // This attempt's layout: an elastic restart may run another DP than config.yaml says.
  j.add("pp", cfg.parallel.pp).add("dp", cfg.parallel.dp).add("ep", cfg.parallel.ep);
  return j;
}

}  // namespace duet::io
