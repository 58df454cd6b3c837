#pragma once
// `duet report --run DIR` without the command line: the run's config.yaml (io/) mapped onto
// the plain shape report/ needs, and the measured report of the run. Shared by
// apps/cmd_report.cpp and apps/cmd_train.cpp (which reports a traced run when it ends).
#include <string>

#include "io/config.h"
#include "report/measured.h"

namespace duet::app {

// pp, dp, ep, the schedule as run and its micro-batches, and the sizes the report reads;
// cores: this machine's (a run's report is usually made where it ran, on one machine).
report::RunShape run_shape(const io::RunConfig& cfg);

// Loads run_dir/config.yaml and builds the report from the run's metrics and traces. Throws
// naming the file that is missing or invalid. cores >= 0 overrides run_shape's (0: a core
// per rank, as on a cluster).
report::Report measured_run_report(const std::string& run_dir, int cores = -1);

// Adds the goodput of a supervised run (run_dir/events.jsonl with metrics.jsonl) to `r`, or a
// note that the run has no supervisor's record. Throws naming the file that is invalid.
void add_run_goodput(report::Report& r, const std::string& run_dir);

}  // namespace duet::app
