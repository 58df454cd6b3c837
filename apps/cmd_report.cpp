// duet report --run DIR: the throughput report of a finished run (report.json/md/html),
// measured from its traces, with the simulator's prediction for the same schedule, and for a
// run started by `duet launch` its goodput (events.jsonl: effective training time, badput per
// interruption, the attempts' timeline).
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "apps/commands.h"
#include "apps/config_options.h"
#include "apps/report_job.h"
#include "report/report.h"

namespace po = boost::program_options;

namespace duet::app {

int cmd_report(int argc, char** argv) {
  po::options_description opts("usage: duet report --run DIR [--out DIR] [--cores N]\n\nWrites report.json, report.md and report.html for a training run (with its goodput when\nevents.jsonl, written by duet launch, is there)");
  opts.add_options()("help,h", "show this help")("run", po::value<std::string>(), "the run directory (runs/<name>)")(
      "out", po::value<std::string>(), "where to write the report (default: the run directory)")(
      "cores", po::value<int>(),
      "cores the run's ranks shared (default: this machine's; 0: a core per rank, e.g. a run on a cluster)");
  po::variables_map vm;
  if (!parse_options(opts, argc, argv, vm)) return 0;  // --help
  if (!vm.count("run")) throw std::invalid_argument("--run DIR is required (a run directory, e.g. runs/tiny)");
  const std::string run = vm["run"].as<std::string>();
  const std::string out = vm.count("out") ? vm["out"].as<std::string>() : run;
  const int cores = vm.count("cores") ? vm["cores"].as<int>() : -1;
  if (vm.count("cores") && cores < 0) throw std::invalid_argument("--cores must be 0 or more");
  report::Report r = measured_run_report(run, cores);
  add_run_goodput(r, run);  // runs started by `duet launch`: effective training time, badput
  for (const auto& note : r.notes)  // a cut-off trace, read up to its last event
    if (note.rfind("Warning: ", 0) == 0) std::fprintf(stderr, "duet report: %s\n", note.c_str());
  report::write_report(r, out);
  std::cout << report::render_markdown(r);
  std::printf("\nwrote %s/report.json, report.md, report.html\n", out.c_str());
  return 0;
}

}  // namespace duet::app
