// duet — the command line. Dispatches to one subcommand per file (apps/cmd_*.cpp).
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>

#include "apps/commands.h"
#include "core/exit_code.h"

std::string duet::app::self_exe() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot find the duet executable (/proc/self/exe)");
  return std::string(buf, n);
}

namespace {

struct Subcommand {
  const char* name;
  int (*run)(int, char**);
  const char* help;
};

constexpr Subcommand kSubcommands[] = {
    {"launch", duet::app::cmd_launch, "run and supervise a multi-rank training job (mpirun, or srun inside Slurm)"},
    {"submit", duet::app::cmd_submit, "submit a training job to Slurm (sbatch): checkpoints and requeues itself"},
    {"status", duet::app::cmd_status, "a run's Slurm job, attempts, nodes, last step and checkpoint"},
    {"train", duet::app::cmd_train, "train in this process, or as one rank of an MPI job"},
    {"report", duet::app::cmd_report, "throughput report of a finished run, measured and simulated"},
    {"schedule", duet::app::cmd_schedule, "print, validate, simulate or draw a pipeline schedule"},
    {"ckpt", duet::app::cmd_ckpt, "inspect or verify checkpoints (duet ckpt inspect|verify DIR)"},
    {"simulate", duet::app::cmd_simulate, "predict a training step at full scale: throughput report"},
};

void usage(FILE* out) {
  std::fprintf(out, "usage: duet <subcommand> [options]   (duet <subcommand> --help)\n\nsubcommands:\n");
  for (const auto& s : kSubcommands) std::fprintf(out, "  %-10s %s\n", s.name, s.help);
}

}  // namespace

int main(int argc, char** argv) {
  using duet::core::exit_code;
  using duet::core::ExitCode;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return exit_code(argc < 2 ? ExitCode::Usage : ExitCode::Done);
  }
  for (const auto& s : kSubcommands) {
    if (std::strcmp(argv[1], s.name) != 0) continue;
    try {
      return s.run(argc - 1, argv + 1);
    } catch (const std::exception& e) {
      // Errors thrown up to here are the user's (config, options, files): nothing ran.
      // Failures while running return their own codes (core/exit_code.h).
      std::fprintf(stderr, "duet %s: error: %s\n", s.name, e.what());
      return exit_code(ExitCode::Usage);
    }
  }
  std::fprintf(stderr, "duet: unknown subcommand '%s'\n", argv[1]);
  usage(stderr);
  return exit_code(ExitCode::Usage);
}
