#pragma once
// `duet simulate` without the command line: a RunConfig mapped onto the cost model's plain
// structs and one simulated step over every rank. report/simulated.h turns the outcome into
// the report. Shared by apps/cmd_simulate.cpp and bench/bench_simulate.cpp.
#include "io/config.h"
#include "report/simulated.h"

namespace duet::app {

using report::SimInputs;
using report::SimOutcome;

SimInputs simulation_inputs(const io::RunConfig& cfg);

// Throws std::invalid_argument naming the config keys when the layout cannot be simulated
// (pp × dp != cluster.gpus, too few micro-batches for the schedule, ...).
SimOutcome simulate_config(const io::RunConfig& cfg);

// The names the report prints that the cost model does not carry: run.name, cluster.gpu.
inline report::SimLabels simulation_labels(const io::RunConfig& cfg) { return {cfg.run.name, cfg.cluster.gpu}; }

}  // namespace duet::app
