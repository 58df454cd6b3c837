// duet train: one process trains the model of a run config.
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "apps/commands.h"
#include "apps/config_options.h"
#include "io/metrics.h"
#include "runtime/trainer.h"

namespace po = boost::program_options;

namespace duet::app {

int cmd_train(int argc, char** argv) {
  po::options_description opts("usage: duet train [--config FILE] [--set key=value ...] [--<key> value ...]\n\n"
                               "Trains on this process and writes runs/<name>/ (config.yaml, metrics.jsonl, train.log)");
  opts.add_options()("help,h", "show this help");
  add_config_options(opts);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(opts).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  const io::RunConfig cfg = config_from_options(vm);
  const std::string run_dir = io::make_run_dir(cfg);
  io::RunLog log(run_dir + "/train.log");
  log.print("duet train: run directory " + run_dir);
  const auto s = runtime::train_local(cfg, run_dir, log);
  char line[512];
  std::snprintf(line, sizeof line,
                "done: %d steps in %s; train loss %.4f; val loss %.4f -> %.4f; %s tok/s; %.2f GFLOP/s (model)",
                s.steps, io::format_duration(s.seconds).c_str(), s.last_loss, s.first_val_loss,
                s.last_val_loss, io::format_rate(s.tokens_per_s).c_str(), s.model_flops_per_s / 1e9);
  log.print(line);
  return 0;
}

}  // namespace duet::app
