// duet submit: writes <run dir>/job.sbatch for a run config and submits it with sbatch. The
// job execs `duet launch` in its allocation (apps/cmd_launch.cpp), which starts the ranks with
// srun --mpi=pmix, checkpoints and requeues on Slurm's USR1 warning and after a node loss.
// The run's lineage id is chosen here, so every start of the job continues the same run (a
// run stopped early in the same directory is continued: its id).
#include <unistd.h>

#include <boost/program_options.hpp>
#include <climits>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/config_options.h"
#include "io/resume_policy.h"
#include "io/run_dir.h"
#include "slurm/batch_script.h"
#include "slurm/client.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace duet::app {

namespace {

// The lineage every start of the job continues. A directory that holds a run stopped early
// (a cancelled, timed-out or given-up job, or one stopped at train.stop_at) is continued, as
// the same command run again continues it under `duet launch`: the job takes that run's id,
// after the checks its start would make (io/run_dir.h, io/resume_policy.h). A new id for it
// would make the job's start skip to <name>-2 and train from step 0, while Slurm's output,
// job.sbatch and slurm-jobs still went to <name>; so does a directory its start would not
// continue, which is refused. Throws std::invalid_argument or io::ConfigError saying why.
std::string run_id_for(const io::RunConfig& cfg, const fs::path& run_dir) {
  std::error_code ec;
  if (!fs::exists(run_dir / "config.yaml", ec) || io::run_finished(run_dir.string()))
    return cfg.run.id.empty() ? io::new_run_id() : cfg.run.id;  // a finished run is refused below
  io::RunConfig existing;
  if (const std::string why = io::why_not_continued(cfg, run_dir.string(), existing); !why.empty())
    throw std::invalid_argument("run.name '" + cfg.run.name + "': " + run_dir.string() + " " + why +
                                ": the job would start <run.name>-2 while Slurm's output went here; continue that "
                                "run (its run.id, checkpoint.resume true) or choose another run.name");
  const std::string what = "run " + existing.run.id + " in " + run_dir.string() + " (its config.yaml)";
  for (const auto& change : io::check_resume(existing, cfg, what))
    std::fprintf(stderr, "duet submit: %s changes %s\n", what.c_str(), change.c_str());
  std::fprintf(stderr, "duet submit: the job continues run %s in %s\n", existing.run.id.c_str(), run_dir.c_str());
  return existing.run.id;
}

}  // namespace


int cmd_submit(int argc, char** argv) {
  po::options_description opts(
      "usage: duet submit [--config FILE] --nodes N [--ranks-per-node R] [--time T] [--partition P]\n"
      "                   [--account A] [--dry-run] [--set key=value ...]\n\n"
      "Writes <run.dir>/<run.name>/job.sbatch and submits it with sbatch (--dry-run: prints it).\n"
      "The job runs `duet launch` on N nodes x R ranks (= parallel.pp x parallel.dp), checkpoints\n"
      "and requeues itself on Slurm's time-limit warning (USR1) and after losing a node. Without a\n"
      "config or parallel.* keys: configs/tiny.yaml as PP 4 DualPipe x DP 2, EP 2 (8 ranks), as\n"
      "duet launch runs it. A run stopped early in <run.dir>/<run.name> is continued (its run.id)");
  opts.add_options()("help,h", "show this help")("nodes", po::value<int>(), "nodes (required)")(
      "ranks-per-node", po::value<int>()->default_value(1), "ranks (MPI tasks) per node")(
      "gpus-per-node", po::value<int>()->default_value(0), "GPUs per node (0: no --gpus-per-node line)")(
      "cpus-per-task", po::value<int>()->default_value(1), "CPUs per rank")(
      "time", po::value<std::string>()->default_value(""), "time limit: minutes, HH:MM:SS, D-HH:MM:SS")(
      "partition", po::value<std::string>()->default_value(""), "partition (default: the cluster's)")(
      "account", po::value<std::string>()->default_value(""), "account (default: the user's)")(
      "signal-seconds", po::value<int>()->default_value(120),
      "USR1 this long before the time limit: the job checkpoints and requeues")(
      "no-kill", "keep the allocation when a node fails (--no-kill): the job goes on on the nodes left, "
                 "with a smaller DP and the same global batch (duet launch --elastic); it requeues itself "
                 "only when too few are left")(
      "dry-run", "print the script, write and submit nothing");
  add_config_options(opts);
  po::variables_map vm;
  if (!parse_options(opts, argc, argv, vm)) return 0;
  if (!vm.count("nodes")) throw std::invalid_argument("--nodes: required (the number of nodes of the job)");
  // Without a layout, the job `duet launch` runs without one (8 ranks, apps/config_options.h).
  const std::vector<std::string> layout = default_layout(vm);
  const io::RunConfig cfg = config_from_options(vm, layout);
  // A simulate-only model (MLA, FP8, ...) is refused before anything is written.
  try {
    io::require_trainable(cfg);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("this config is simulated, not trained (duet simulate): ") + e.what());
  }
  const int nodes = vm["nodes"].as<int>(), per_node = vm["ranks-per-node"].as<int>();
  const int ranks = cfg.parallel.pp * cfg.parallel.dp;
  if (nodes < 1 || per_node < 1 || nodes * per_node != ranks)
    throw std::invalid_argument("--nodes " + std::to_string(nodes) + " x --ranks-per-node " + std::to_string(per_node) +
                                " must equal parallel.pp x parallel.dp = " + std::to_string(cfg.parallel.pp) + " x " +
                                std::to_string(cfg.parallel.dp) + " = " + std::to_string(ranks) + " ranks");
  if (cfg.run.name.empty()) throw std::invalid_argument("run.name: duet submit needs a run name (the job's name)");

  const fs::path run_root = fs::absolute(cfg.run.dir).lexically_normal();
  const fs::path run_dir = run_root / cfg.run.name;
  const std::string id = run_id_for(cfg, run_dir);
  slurm::BatchJob job;
  job.job_name = cfg.run.name;
  job.run_dir = run_dir.string();
  job.work_dir = fs::current_path().string();
  job.nodes = nodes, job.ranks_per_node = per_node;
  job.gpus_per_node = vm["gpus-per-node"].as<int>(), job.cpus_per_task = vm["cpus-per-task"].as<int>();
  job.time = vm["time"].as<std::string>(), job.partition = vm["partition"].as<std::string>();
  job.account = vm["account"].as<std::string>(), job.signal_seconds = vm["signal-seconds"].as<int>();
  job.no_kill = vm.count("no-kill") > 0;
  // `duet launch` with the same config options, the lineage and an absolute run directory.
  job.command = {self_exe(), "launch"};
  for (const auto& s : layout) job.command.insert(job.command.end(), {"--set", s});  // spelled out: what was checked
  if (job.no_kill) job.command.push_back("--elastic");  // shrink in the allocation after a node loss
  static const std::vector<std::string> own = {"--nodes", "--ranks-per-node", "--gpus-per-node", "--cpus-per-task",
                                               "--time", "--partition", "--account", "--signal-seconds"};
  // run.dir, run.name and run.id are given once, resolved, at the end: drop the user's.
  static const std::vector<std::string> resolved = {"run.dir", "run.name", "run.id"};
  auto sets_resolved_key = [&](const std::string& kv) {
    for (const auto& k : resolved)
      if (kv.rfind(k + "=", 0) == 0) return true;
    return false;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-kill" || a == "--dry-run") continue;
    bool skip = false;
    for (const auto& o : own) {
      if (a == o) ++i, skip = true;
      else if (a.rfind(o + "=", 0) == 0) skip = true;
    }
    for (const auto& k : resolved) {
      if (a == "--" + k) ++i, skip = true;
      else if (a.rfind("--" + k + "=", 0) == 0) skip = true;
    }
    if ((a == "--set" || a == "-s") && i + 1 < argc && sets_resolved_key(argv[i + 1])) ++i, skip = true;
    else if (a.rfind("--set=", 0) == 0 && sets_resolved_key(a.substr(6))) skip = true;
    else if (a.rfind("-s", 0) == 0 && a.size() > 2 && a[2] != '-' && sets_resolved_key(a.substr(a[2] == '=' ? 3 : 2)))
      skip = true;
    if (!skip) job.command.push_back(a);
  }
  job.command.insert(job.command.end(), {"--set", "run.dir=" + run_root.string(), "--set", "run.name=" + cfg.run.name,
                                         "--set", "run.id=" + id});
  const std::string script = slurm::make_batch_script(job);  // validates every field first
  // Every start of the job must continue this directory: one holding a finished run would be
  // skipped for <name>-2 while Slurm's output still went here.
  if (io::run_finished(run_dir.string()))
    throw std::invalid_argument("run.name '" + cfg.run.name + "': " + run_dir.string() +
                                " holds a finished run; choose another run.name (or remove it)");
  if (vm.count("dry-run")) {
    std::fputs(script.c_str(), stdout);
    return 0;
  }

  fs::create_directories(run_dir);
  const fs::path script_path = run_dir / "job.sbatch";
  std::ofstream(script_path) << script;
  const std::string job_id = slurm::submit(script_path.string());
  // duet status finds the job through this file: one line per submission.
  std::ofstream(run_dir / "slurm-jobs", std::ios::app) << job_id << ' ' << std::time(nullptr) << ' ' << id << '\n';
  std::printf("duet submit: Slurm job %s, run %s: %d node%s x %d rank%s, script %s\n", job_id.c_str(), id.c_str(),
              nodes, nodes == 1 ? "" : "s", per_node, per_node == 1 ? "" : "s", script_path.c_str());
  std::printf("follow it: squeue -j %s; tail -f %s/slurm-%s.out; duet status %s\n", job_id.c_str(), run_dir.c_str(),
              job_id.c_str(), run_dir.c_str());
  return 0;
}

}  // namespace duet::app
