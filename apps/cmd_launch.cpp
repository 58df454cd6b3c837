// duet launch: starts a multi-rank job through mpirun — or, inside a Slurm allocation, srun
// --mpi=pmix on the allocation's nodes (apps/launch_slurm.h) — and owns its life as its
// supervisor (supervisor/supervise.h): watches the ranks, restarts them after a fault,
// stops them gracefully on a signal; under Slurm it requeues the job after a SIGUSR1 stop or
// when nodes were lost. With no arguments it runs the default job: configs/tiny.yaml on 8
// ranks, PP 4 DualPipe × DP 2 with EP 2.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <algorithm>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "apps/commands.h"
#include "apps/config_options.h"
#include "apps/launch_slurm.h"
#include "core/exit_code.h"
#include "core/supervision.h"
#include "io/run_dir.h"
#include "kernels/peak.h"
#include "checkpoint/snapshot.h"
#include "runtime/checkpointing.h"
#include "runtime/memory_estimate.h"
#include "runtime/memory_snapshots.h"
#include "runtime/train_setup.h"
#include "slurm/client.h"
#include "slurm/hostlist.h"
#include "supervisor/supervise.h"

namespace po = boost::program_options;

namespace duet::app {

int cmd_launch(int argc, char** argv) {
  // SIGUSR1 (a scheduler's time-limit warning, a preemption) must never end this process by its
  // default action: the job would end FAILED, or lose its checkpoint and requeue. One that comes
  // while the launch is still getting ready is acted on once the supervisor runs; one after the
  // run ended (Slurm checks limits every 30 s: seen in
  // SlurmJob.TimeLimitCheckpointsRequeuesResumesAndFinishes) is counted and nothing more. The
  // ranks start with the default action (supervisor/job.cpp).
  supervisor::hold_usr1_until_supervised();
  po::options_description opts(
      "usage: duet launch [--nproc N] [--config FILE] [--set key=value ...] [--<key> value ...]\n\n"
      "Runs `duet train` on N local ranks under mpirun (oversubscribed when N exceeds the cores).\n"
      "Without a config or parallel.* keys: configs/tiny.yaml as PP 4 DualPipe x DP 2, EP 2 (8 ranks)");
  opts.add_options()("help,h", "show this help")("nproc,n", po::value<int>(), "ranks (default: parallel.pp × parallel.dp)")(
      "mpirun", po::value<std::string>()->default_value("mpirun"), "the MPI launcher")(
      "bind", po::value<std::string>()->default_value("core"),
      "core: rank r on core r mod cores (whole data-parallel replicas share a core when ranks "
      "exceed cores; ranks never migrate) | none: leave placement to the OS")(
      "launcher", po::value<std::string>()->default_value("auto"),
      "auto: srun --mpi=pmix inside a Slurm allocation whose srun has PMIx, else mpirun | srun | mpirun")(
      "nodelist", po::value<std::string>(),
      "Slurm: run the ranks on these nodes of the allocation (a hostlist, e.g. n[1-3]) instead of all")(
      "elastic",
      "Slurm, in a --no-kill allocation (duet submit --no-kill): after a node is lost, relaunch on the "
      "nodes left with a smaller DP and the same global batch instead of requeueing the job")(
      "dry-run", "print the command instead of running it");
  add_config_options(opts);
  po::variables_map vm;
  if (!parse_options(opts, argc, argv, vm)) return 0;  // --help
  // Forward every config option to the ranks unchanged; add the default layout if none given.
  std::vector<std::string> train_args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--nproc" || a == "-n" || a == "--mpirun" || a == "--bind" || a == "--launcher" || a == "--nodelist") {
      ++i;
      continue;
    }
    if (a.rfind("--nproc=", 0) == 0 || a.rfind("--mpirun=", 0) == 0 || a.rfind("--bind=", 0) == 0 ||
        a.rfind("--launcher=", 0) == 0 || a.rfind("--nodelist=", 0) == 0 || a == "--dry-run" || a == "--elastic")
      continue;
    train_args.push_back(a);
  }
  std::vector<std::string> layout;
  for (const auto& s : default_layout(vm)) layout.insert(layout.end(), {"--set", s});
  train_args.insert(train_args.begin(), layout.begin(), layout.end());
  // Validate here, once, so a config error is one clear message rather than N.
  po::variables_map resolved;
  po::store(po::command_line_parser(train_args).options(opts).style(option_style()).run(), resolved);
  const io::RunConfig cfg = config_from_options(resolved);
  const int need = cfg.parallel.pp * cfg.parallel.dp;
  const int nproc = vm.count("nproc") ? vm["nproc"].as<int>() : need;
  if (nproc != need)
    throw std::invalid_argument("--nproc " + std::to_string(nproc) + " does not match parallel.pp × parallel.dp = " +
                                std::to_string(need));
  // Every rank checks again; checking here says it once, before mpirun starts N processes.
  std::printf("duet launch: %s\n", runtime::check_memory(cfg, nproc).c_str());

  const std::string bind = vm["bind"].as<std::string>();
  if (bind != "core" && bind != "none")
    throw std::invalid_argument("--bind " + bind + ": allowed values are core | none");
  const auto allocation = slurm::current_allocation();
  const std::string launcher = choose_launcher(vm["launcher"].as<std::string>(), allocation);
  if (vm.count("nodelist") && launcher != "srun")
    throw std::invalid_argument("--nodelist: only inside a Slurm allocation with --launcher srun");
  const bool elastic_slurm = vm.count("elastic") > 0;
  if (elastic_slurm && launcher != "srun")
    throw std::invalid_argument("--elastic: only inside a Slurm allocation with --launcher srun (on one machine: "
                                "launch.ranks_per_node makes logical nodes)");
  SlurmLaunch slurm_launch;
  if (launcher == "srun") {
    slurm_launch.allocation = *allocation, slurm_launch.duet = self_exe();
    slurm_launch.nodes = vm.count("nodelist") ? slurm::hostlist_expand(vm["nodelist"].as<std::string>()) : allocation->nodes;
    if (nproc % (int)slurm_launch.nodes.size() != 0)
      throw std::invalid_argument(std::to_string(nproc) + " ranks on " + std::to_string(slurm_launch.nodes.size()) +
                                  " nodes (" + slurm::hostlist_compress(slurm_launch.nodes) +
                                  "): duet runs the same number of ranks on every node; choose them with --nodelist");
    for (const auto& n : slurm_launch.nodes)
      if (std::find(allocation->nodes.begin(), allocation->nodes.end(), n) == allocation->nodes.end())
        throw std::invalid_argument("--nodelist: " + n + " is not a node of Slurm job " + allocation->job_id + " (" +
                                    slurm::hostlist_compress(allocation->nodes) + ")");
    std::printf("duet launch: inside Slurm job %s (nodes %s, restart %d): ranks start with srun --mpi=pmix\n",
                allocation->job_id.c_str(), slurm::hostlist_compress(slurm_launch.nodes).c_str(),
                allocation->restart_count);
  } else if (allocation) {
    std::printf("duet launch: inside Slurm job %s: ranks start with mpirun (%s)\n", allocation->job_id.c_str(),
                vm["launcher"].as<std::string>() == "mpirun" ? "--launcher mpirun" : "this cluster's srun has no PMIx");
  }
  // The command of one attempt: its layout (an elastic attempt after a node loss runs a
  // smaller DP on the nodes left) replaces any parallel.dp / parallel.ep given.
  std::vector<std::string> base_args;
  for (size_t i = 0; i < train_args.size(); ++i) {
    const std::string& a = train_args[i];
    const bool key = a == "--parallel.dp" || a == "--parallel.ep";
    const bool set = (a == "--set" || a == "-s") && i + 1 < train_args.size() &&
                     (train_args[i + 1].rfind("parallel.dp=", 0) == 0 || train_args[i + 1].rfind("parallel.ep=", 0) == 0);
    if (key || set) { ++i; continue; }
    if (a.rfind("--parallel.dp=", 0) == 0 || a.rfind("--parallel.ep=", 0) == 0 || a.rfind("--set=parallel.dp=", 0) == 0 ||
        a.rfind("--set=parallel.ep=", 0) == 0)
      continue;
    base_args.push_back(a);
  }
  const std::string mpirun = vm["mpirun"].as<std::string>(), exe = self_exe();
  auto duet_part = [=](const supervisor::AttemptPlan& plan) {
    std::vector<std::string> cmd = {exe, "train"};
    cmd.insert(cmd.end(), base_args.begin(), base_args.end());
    cmd.insert(cmd.end(), {"--set", "parallel.dp=" + std::to_string(plan.layout.dp), "--set",
                           "parallel.ep=" + std::to_string(plan.layout.ep)});
    return cmd;
  };
  auto mpirun_command = [=](const supervisor::AttemptPlan& plan) {
    std::vector<std::string> cmd = {mpirun, "--oversubscribe", "-np", std::to_string(plan.ranks)};
    // Round-robin over cores: ranks are numbered pp-major (dp fastest), so with dp a multiple
    // of the cores each core holds whole pipeline replicas, whose ranks fill each other's
    // bubbles and communication waits; a rank pinned to a core keeps its caches.
    // Open MPI binds by itself when not told (to a core for two ranks or fewer): "none" says so.
    if (bind == "core") cmd.insert(cmd.end(), {"--map-by", "core", "--bind-to", "core:overload-allowed"});
    else cmd.insert(cmd.end(), {"--bind-to", "none"});
    if (geteuid() == 0) cmd.push_back("--allow-run-as-root");
    // The supervisor's address, the attempt, the data to skip and the run directory's claim
    // reach ranks on every node.
    // Only variables the attempt has: mpirun warns about each -x it cannot find.
    std::vector<const char*> vars = {core::kSupervisorEnv, core::kAttemptEnv, core::kSkipStepsEnv, core::kFenceEnv,
                                     io::kEnvRunDir, io::kEnvRunId, io::kEnvRunLock, "DUET_FMA_PEAK_GFLOPS"};
    if (cfg.launch.ranks_per_node > 0) vars.insert(vars.end(), {core::kNodesEnv, core::kRanksPerNodeEnv});
    if (std::getenv(runtime::kMemoryDirEnv)) vars.push_back(runtime::kMemoryDirEnv);
    for (const char* v : vars) cmd.insert(cmd.end(), {"-x", v});
    const auto d = duet_part(plan);
    cmd.insert(cmd.end(), d.begin(), d.end());
    return cmd;
  };
  supervisor::AttemptPlan first;
  first.layout = io::configured_layout(cfg), first.ranks = nproc;
  std::vector<std::string> first_cmd = mpirun_command(first);
  if (launcher == "srun") {
    // srun passes this process's whole environment to the ranks: the supervisor's address,
    // the attempt and the run directory's claim among it.
    first_cmd = srun_command(slurm_launch.nodes, nproc);
    const auto d = duet_part(first);
    first_cmd.insert(first_cmd.end(), d.begin(), d.end());
  }
  std::string line;
  for (const auto& c : first_cmd) line += (line.empty() ? "" : " ") + c;
  std::printf("duet launch: %s\n", line.c_str());
  std::fflush(stdout);
  if (vm.count("dry-run")) return 0;

  // The job's top process owns the run directory: launch claims it and holds its lock while
  // the ranks run; they get the directory, run id and lock token through the environment.
  const io::RunClaim claim = io::claim_run_dir(cfg, [](std::string_view l) { std::printf("%.*s\n", (int)l.size(), l.data()); });
  for (const auto& note : claim.notes) std::printf("duet launch: %s\n", note.c_str());
  std::fflush(stdout);
  if (claim.finished) return 0;  // a requeued job whose run had already finished: done
  setenv(io::kEnvRunDir, claim.dir.c_str(), 1);
  setenv(io::kEnvRunId, claim.id.c_str(), 1);
  setenv(io::kEnvRunLock, claim.lock->token().c_str(), 1);

  // The ranks report model FLOP/s against the FMA peak of the cores they share, measured here
  // before they start (measured by the ranks themselves, at once, it would be shared too), on
  // as many threads as this machine's ranks compute on: a rank bound to a core (--bind core,
  // the default) computes on that core, an srun task on its --cpus-per-task (1 from duet
  // submit), an unbound rank (--bind none) on its compute threads. The ranks' model FLOP/s are
  // the whole job's: with several machines, assumed alike, the peak is this one's times their
  // number — machines, not Slurm nodes: several slurmd may share one (the test cluster's do).
  const int cores = (int)std::max(1u, std::thread::hardware_concurrency());
  const int nodes = launcher == "srun" ? std::max(1, slurm::distinct_hosts(slurm_launch.nodes)) : 1;
  const int local_ranks = std::max(1, nproc / nodes);
  int per_rank = 1;
  if (launcher == "srun") {
    const char* cpt = std::getenv("SLURM_CPUS_PER_TASK");
    per_rank = std::min(runtime::compute_threads(cfg, local_ranks), cpt && std::atoi(cpt) > 0 ? std::atoi(cpt) : 1);
  } else if (bind == "none") {
    per_rank = runtime::compute_threads(cfg, local_ranks);
  }
  cpu::FmaPeak peak = cpu::measure_fma_peak(std::min(cores, local_ranks * per_rank));
  if (launcher == "srun")
    std::printf("duet launch: FMA peak %.0f GFLOP/s: %d thread(s) measured here, times %d machine(s) for %zu node(s)\n",
                peak.flops * nodes * 1e-9, peak.threads, nodes, slurm_launch.nodes.size());
  peak.flops *= nodes;
  setenv("DUET_FMA_PEAK_GFLOPS", std::to_string(peak.flops * 1e-9).c_str(), 1);

  // This process becomes the job's supervisor: it starts mpirun, watches the ranks and
  // restarts them from the newest checkpoint after a fault (docs/fault-tolerance.md).
  supervisor::SuperviseOptions so;
  auto say = [](const std::string& l) {
    std::printf("duet launch: %s\n", l.c_str());
    std::fflush(stdout);
  };
  so.command = [&](const supervisor::AttemptPlan& plan) {
    if (launcher != "srun") return mpirun_command(plan);
    // The supervisor chose the nodes (the Slurm checks below) and the layout.
    std::vector<std::string> c = srun_command(plan.nodes, plan.ranks);
    const auto d = duet_part(plan);
    c.insert(c.end(), d.begin(), d.end());
    return c;
  };
  so.ranks = nproc;
  so.layout = first.layout;
  if (cfg.launch.ranks_per_node > 0) {  // logical nodes on this machine: an elastic job
    supervisor::ElasticOptions el;
    el.ranks_per_node = cfg.launch.ranks_per_node;
    for (int n = 0; n * el.ranks_per_node < nproc; ++n) el.nodes.push_back("node" + std::to_string(n));
    el.logical = true;
    el.configured = first.layout;
    el.rules = io::layout_rules(cfg);
    el.node_window_s = cfg.fault.node_window_s;
    el.excluded_path = (std::filesystem::path(claim.dir) / "excluded-nodes").string();
    so.elastic = el;
  }
  if (launcher == "srun") {
    // The supervisor keeps the allocation's nodes: before a relaunch it drops those Slurm
    // reports gone and those that fail a probe (node_problems), as well as a node whose ranks
    // all died together. With --elastic (a --no-kill allocation) the next attempt runs on the
    // nodes left with a smaller DP; without, the job goes back to the queue without them.
    supervisor::ElasticOptions el;
    el.shrink = elastic_slurm;
    el.reload_excluded = false;
    el.nodes = slurm_launch.nodes;
    el.ranks_per_node = nproc / (int)slurm_launch.nodes.size();
    el.configured = first.layout;
    el.rules = io::layout_rules(cfg);
    el.node_window_s = cfg.fault.node_window_s;
    el.excluded_path = (std::filesystem::path(claim.dir) / "excluded-nodes").string();
    el.check_nodes = [&](const std::vector<std::string>& healthy) { return node_problems(slurm_launch, healthy, say); };
    so.elastic = el;
  }
  so.policy.hang_timeout_s = cfg.fault.hang_timeout_s, so.policy.setup_timeout_s = cfg.fault.setup_timeout_s;
  so.policy.save_timeout_s = cfg.fault.save_timeout_s, so.policy.backoff_s = cfg.fault.backoff_s;
  so.policy.max_restarts = cfg.fault.max_restarts, so.policy.straggler_steps = cfg.fault.straggler_steps;
  so.policy.host_timeout_s = cfg.fault.host_timeout_s;
  so.events_path = (std::filesystem::path(claim.dir) / "events.jsonl").string();
  so.fence_path = (std::filesystem::path(claim.dir) / "fence").string();  // the ranks' run_dir + "/fence"
  if (cfg.checkpoint.memory != io::MemorySnapshots::Off)  // the ranks decide whether they keep any
    so.snapshot_dir = ckpt::snapshot_run_dir(runtime::memory_snapshot_dir(cfg), claim.id);
  if (!so.snapshot_dir.empty())
    so.keep_snapshot = [&cfg, id = claim.id, run_dir = claim.dir, snapshots = so.snapshot_dir,
                        fence = so.fence_path](std::int64_t generation) -> std::optional<supervisor::SuperviseOptions::KeptSnapshot> {
      ckpt::SnapshotSearch search;
      search.lineage = id, search.below_generation = generation, search.model_hash = runtime::model_hash(cfg);
      ckpt::CheckpointLayout run;
      run.lineage = id, run.model_hash = search.model_hash, run.config_hash = io::config_hash(cfg);
      ckpt::SaveOptions opt;
      opt.keep = cfg.checkpoint.keep, opt.fence = ckpt::Fence{fence, generation};
      opt.log = [](std::string_view line) {
        std::printf("%.*s\n", (int)line.size(), line.data());
        std::fflush(stdout);
      };
      const auto saved = ckpt::save_snapshot_as_checkpoint(snapshots, search, io::checkpoint_dir(cfg, run_dir), run, opt);
      if (!saved) return std::nullopt;
      supervisor::SuperviseOptions::KeptSnapshot kept;
      kept.step = saved->step, kept.path = saved->path;
      kept.line = "saved the in-memory snapshot of step " + std::to_string(saved->step) + " as the checkpoint " +
                  saved->path + " (the newest was " +
                  (saved->newest_checkpoint > 0 ? "step " + std::to_string(saved->newest_checkpoint) : "none") +
                  "): the next launch of this run resumes from it";
      return kept;
    };
  so.schedule = core::format_schedule_kind(cfg.parallel.schedule);
  so.log = [](const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  };
  // A stop asked for as the last step ended (Slurm's warning, just then) finds the run
  // finished: the job is done, with nothing left to requeue it for.
  so.run_finished = [dir = claim.dir] { return io::run_finished(dir); };
  const int code = supervisor::supervise(so);
  // Exit 5: stopped by SIGUSR1 (Slurm's time-limit warning, a preemption) with a checkpoint
  // saved. Under Slurm the job requeues itself: the batch script exec'd this process, so
  // nothing else is left to do it.
  if (code == core::exit_code(core::ExitCode::RequeueRequested) && allocation) {
    // A job that lost nodes (and cannot or may not shrink onto the rest) goes back to the
    // queue without them.
    std::vector<std::string> lost;
    if (launcher == "srun") {
      std::ifstream f(so.elastic->excluded_path);
      for (std::string l; std::getline(f, l);)
        if (!l.empty()) lost.push_back(l.substr(0, l.find(' ')));
    }
    requeue_this_job(allocation->job_id, lost, say);
  }
  if (code != 0)
    std::fprintf(stderr, "duet launch: the job ended with exit status %d%s%s\n", code,
                 *core::exit_code_meaning(code) ? ": " : "", core::exit_code_meaning(code));
  return code;
}

}  // namespace duet::app
