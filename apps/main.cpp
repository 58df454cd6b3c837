// duet — the command line. Dispatches to one subcommand per file (apps/cmd_*.cpp).
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "apps/commands.h"

namespace {

struct Subcommand {
  const char* name;
  int (*run)(int, char**);
  const char* help;
};

constexpr Subcommand kSubcommands[] = {
    {"launch", duet::app::cmd_launch, "run a multi-rank training job on this machine (mpirun)"},
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
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (const auto& s : kSubcommands) {
    if (std::strcmp(argv[1], s.name) != 0) continue;
    try {
      return s.run(argc - 1, argv + 1);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "duet %s: error: %s\n", s.name, e.what());
      return 2;
    }
  }
  std::fprintf(stderr, "duet: unknown subcommand '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
