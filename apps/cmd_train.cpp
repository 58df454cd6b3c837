// duet train: trains the model of a run config — on one process, or as one rank of an MPI
// job (mpirun -np PP·DP duet train ...; `duet launch` writes that command for you).
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include "apps/commands.h"
#include "apps/config_options.h"
#include "apps/report_job.h"
#include "checkpoint/checkpoint.h"
#include "core/exit_code.h"
#include "io/read_limited.h"
#include "io/data.h"
#include "io/metrics.h"
#include "io/run_dir.h"
#include "kernels/gemm.h"
#include "kernels/peak.h"
#include "report/report.h"
#include "runtime/comm_mpi.h"
#include "runtime/memory_estimate.h"
#include "runtime/memory_snapshots.h"
#include "runtime/mpi.h"
#include "runtime/term_stop.h"
#include "runtime/train_setup.h"
#include "runtime/trainer.h"

namespace po = boost::program_options;

namespace duet::app {

namespace {

// Under `duet launch` the directory is launch's (it holds the lock); otherwise this process
// is the job's top process and takes it (a lone `duet train`, or rank 0 under a bare mpirun).
io::RunClaim claim_for_rank0(const io::RunConfig& cfg) {
  io::RunClaim joined = io::join_launched_run();
  if (!joined.dir.empty()) return joined;
  return io::claim_run_dir(cfg, [](std::string_view line) { std::printf("%.*s\n", (int)line.size(), line.data()); });
}

// The FMA peak (FLOP/s) of the cores this job computes on, for the run log: model FLOP/s are
// reported as a fraction of it. One process measures it itself, with its compute threads;
// ranks started together would share the cores while measuring, so `duet launch` measures
// it before starting them and passes it in DUET_FMA_PEAK_GFLOPS. 0 when neither applies.
double job_fma_peak(const io::RunConfig& cfg, int world, io::RunLog& log) {
  std::string line;
  double flops = 0;
  if (const char* env = std::getenv("DUET_FMA_PEAK_GFLOPS")) {
    flops = std::atof(env) * 1e9;
    line = "FMA peak " + std::to_string((int)(flops * 1e-9)) + " GFLOP/s (" + cpu::widest_fma_isa() +
           ", all cores the job uses; measured by duet launch)";
  } else if (world == 1) {
    const cpu::FmaPeak p = cpu::measure_fma_peak(runtime::compute_threads(cfg, 1));
    flops = p.flops;
    char b[160];
    std::snprintf(b, sizeof b, "FMA peak %.1f GFLOP/s (%s, %d threads, %.1f per thread)", p.flops * 1e-9, p.isa,
                  p.threads, p.per_thread() * 1e-9);
    line = b;
  } else {
    line = "FMA peak not measured: ranks share the cores (duet launch measures it before starting them)";
  }
  log.print("machine: " + std::to_string(std::thread::hardware_concurrency()) + " CPUs, " + line + "; GEMM: " +
            cpu::gemm_library());
  return flops;
}

}  // namespace

int cmd_train(int argc, char** argv) {
  // Before any thread starts (MPI's, OpenMP's, the compute threads): SIGTERM is taken on a
  // thread of its own, never by a handler on a thread inside a GEMM (runtime/term_stop.h).
  runtime::route_sigterm();
  po::options_description opts("usage: duet train [--config FILE] [--set key=value ...] [--<key> value ...]\n\n"
                               "Trains on this process, or as one rank under mpirun, and writes\n"
                               "runs/<name>/ (config.yaml, metrics.jsonl, train.log)");
  opts.add_options()("help,h", "show this help")(
      "dry-run", "print the memory estimate per rank and whether it fits, then exit (nothing is allocated)");
  add_config_options(opts);
  po::variables_map vm;
  if (!parse_options(opts, argc, argv, vm)) return 0;  // --help
  io::RunConfig cfg = config_from_options(vm);  // run.name and run.id are settled with the run directory
  // Sizes first, on every rank, from the config alone: a job that cannot fit is refused
  // (io::ConfigError, exit code Usage) before anything large is allocated.
  if (vm.count("dry-run")) {
    std::printf("duet train --dry-run: %s\n", runtime::check_memory(cfg, runtime::local_ranks()).c_str());
    return 0;
  }
  const std::string memory_line = runtime::check_memory(cfg, runtime::local_ranks());
  const std::string gpu_line = runtime::bind_local_gpu(cfg);  // before anything touches CUDA
  runtime::backend_for(cfg);  // runtime.device: cuda without a GPU is a usage error before MPI starts
  runtime::data_plane_for(cfg);  // and so is runtime.data_plane: nccl where NCCL cannot run

  ckpt::init_before_mpi();  // HDF5 first: see checkpoint/checkpoint.h
  runtime::MpiSession mpi(&argc, &argv);
  const std::uint64_t rss_at_start = runtime::current_rss();
  const int rank = runtime::world_rank(), world = runtime::world_size();
  const int need = cfg.parallel.pp * cfg.parallel.dp;
  if (world != need) {
    const std::string msg = "the layout parallel.pp × parallel.dp = " + std::to_string(need) + " ranks, but " +
                            std::to_string(world) + " were started; run `duet launch --nproc " +
                            std::to_string(need) + "` (or mpirun -np " + std::to_string(need) + " duet train ...)";
    if (world > 1) runtime::fatal(msg);
    throw std::invalid_argument(msg);
  }
  core::ExitCode exit_status = core::ExitCode::Done;
  try {
    auto comm = runtime::mpi_world();
    // Rank 0 claims the run directory (or joins the one `duet launch` claimed) and tells the
    // others its path and run id.
    io::RunClaim claim = rank == 0 ? claim_for_rank0(cfg) : io::RunClaim{};
    std::string run_dir = claim.dir, run_id = claim.id;
    comm->broadcast(run_dir, 0);
    comm->broadcast(run_id, 0);
    // run.id names a run that has finished: nothing to train (io/run_dir.h).
    if (comm->allreduce<int32_t>(claim.finished ? 1 : 0, runtime::ReduceOp::Max) != 0) {
      if (rank == 0)
        for (const auto& note : claim.notes) std::printf("duet train: %s\n", note.c_str());
      return 0;
    }
    cfg.run.id = run_id;
    cfg.run.name = std::filesystem::path(run_dir).filename().string();
    auto done = comm->dup();  // for the barrier after training: train() owns `comm`
    io::RunLog log(rank == 0 ? run_dir + "/train.log" : "", /*echo=*/rank == 0);
    log.print("duet train: run directory " + run_dir);
    for (const auto& note : claim.notes) log.print(note);
    log.print(memory_line);
    if (!gpu_line.empty()) log.print(gpu_line);
    const double fma_peak = rank == 0 ? job_fma_peak(cfg, world, log) : 0;
    const auto s = runtime::train(cfg, run_dir, log, std::move(comm));
    char of_peak[64] = "";
    if (fma_peak > 0)
      std::snprintf(of_peak, sizeof of_peak, " = %.1f%% of the FMA peak", 100 * s.model_flops_per_s / fma_peak);
    // The run is finished once its last step is trained and the checkpoint asked for there (if
    // any) is saved — else running it again resumes and saves the end — and only the attempt
    // that owns the run may say so: a rank of a superseded attempt (checkpoint/fence.h) must not
    // end the newer attempt's run. (An earlier checkpoint that failed still makes the exit 3.)
    std::string not_finished;
    if (rank == 0 && s.steps == cfg.train.steps && !s.end_not_saved && s.superseded.empty()) {
      try {
        const ckpt::FenceGuard owner(s.fence);
        io::mark_run_finished(run_dir, cfg, s.steps);
      } catch (const std::runtime_error& e) {
        not_finished = e.what();
      }
    }
    // A run stopped early (a signal, train.stop_at) may have had no evaluation since its start.
    char val[128];
    const int start = s.steps - s.trained;
    if (s.trained == 0)  // it found the run complete: one evaluation, at the end
      std::snprintf(val, sizeof val, "val loss %.4f", s.first_val_loss);
    else if (s.last_val_step == start)
      std::snprintf(val, sizeof val, "val loss %.4f at step %d, none since", s.first_val_loss, start);
    else if (s.last_val_step < s.steps)
      std::snprintf(val, sizeof val, "val loss %.4f -> %.4f (at step %d)", s.first_val_loss, s.last_val_loss,
                    s.last_val_step);
    else
      std::snprintf(val, sizeof val, "val loss %.4f -> %.4f", s.first_val_loss, s.last_val_loss);
    char line[640];
    std::snprintf(line, sizeof line,
                  "done: %d steps in %s; train loss %.4f; %s; %s tok/s; %.2f GFLOP/s (model)%s; "
                  "%.1f%% of executor time waiting on communication (or for a core: see the report)",
                  s.steps, io::format_duration(s.seconds).c_str(), s.last_loss, val,
                  io::format_rate(s.tokens_per_s).c_str(), s.model_flops_per_s / 1e9, of_peak, 100 * s.wait_fraction);
    log.print(line);
    const std::uint64_t peak = runtime::peak_rss();
    log.print("memory: peak resident " + io::format_bytes(peak) + ", " +
              io::format_bytes(peak > rss_at_start ? peak - rss_at_start : 0) + " above start-up (" +
              std::to_string(peak > rss_at_start ? peak - rss_at_start : 0) + " bytes; estimated " +
              std::to_string(runtime::largest_rank_memory(cfg).total()) + " bytes per rank)");
    if (!s.checkpoint_not_saved.empty()) {
      log.print("duet train: " + s.checkpoint_not_saved);
      if (s.end_not_saved && s.steps == cfg.train.steps)
        log.print("duet train: the run is not marked finished (its end is not saved): run it again to resume from "
                  "its newest checkpoint and save the end");
      exit_status = core::ExitCode::CheckpointNotSaved;
    }
    if (!not_finished.empty()) {
      log.print("duet train: the run is not marked finished: " + not_finished);
      if (exit_status == core::ExitCode::Done) exit_status = core::ExitCode::Failed;
    }
    // A superseded attempt ends having written nothing more of the run (its report included).
    if (!s.superseded.empty()) {
      log.print("duet train: this attempt was superseded (see above) and wrote nothing more of the run");
      exit_status = core::ExitCode::Failed;
    }
    // Every rank's trace is written: rank 0 turns them into the run's report — unless this
    // start trained nothing (it resumed a run that had finished: the last report stands).
    if (cfg.runtime.trace && s.trained > 0 && s.superseded.empty()) {
      done->barrier();
      if (rank == 0) {
        const report::Report r = measured_run_report(run_dir);
        report::write_report(r, run_dir);
        auto get = [&](const char* key) {
          for (const auto& f : r.headline)
            if (f.key == key) return f.number;
          return 0.0;
        };
        std::snprintf(line, sizeof line,
                      "summary: step %.3f s (median), bubble %.1f%%, waiting for a core %.1f%%, exposed "
                      "communication %.1f%% of the step; simulator with measured op costs: %.3f s; report: "
                      "%s/report.html",
                      get("step_time_s"), 100 * get("bubble_fraction"), 100 * get("core_wait_fraction"),
                      100 * get("exposed_comm_fraction"), get("predicted_step_time_s"), run_dir.c_str());
        log.print(line);
      }
    }
  } catch (const std::exception& e) {
    // Never leave the other ranks hanging — unless every rank refused together: then each ends
    // with the usage code, rank 0 saying why.
    const bool agreed = dynamic_cast<const io::AgreedConfigError*>(&e) != nullptr;
    if (world > 1 && !agreed) runtime::fatal(e.what());
    if (agreed && world > 1) {
      // Rank 0 says why before any rank leaves: the first rank to end with a non-zero code
      // makes mpirun end the job, and on a loaded machine that was before rank 0 had printed.
      if (rank == 0) std::fprintf(stderr, "duet train: error: %s\n", e.what()), std::fflush(stderr);
      runtime::mpi_world()->barrier();
      return core::exit_code(core::ExitCode::Usage);
    }
    // The user's doing (config, data, layout): a usage error, reported by main.
    if (dynamic_cast<const io::ConfigError*>(&e) || dynamic_cast<const io::DataError*>(&e) ||
        dynamic_cast<const std::invalid_argument*>(&e))
      throw;
    std::fprintf(stderr, "duet train: error: %s\n", e.what());
    return core::exit_code(core::ExitCode::Failed);
  }
  return core::exit_code(exit_status);
}

}  // namespace duet::app
