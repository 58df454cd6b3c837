#pragma once
// `duet simulate` without the command line: a RunConfig mapped onto the cost model's plain
// structs and one simulated step over every rank. report/simulated.h turns the outcome into
// the report. Shared by apps/cmd_simulate.cpp and bench/bench_simulate.cpp.
#include "io/config.h"
#include <string>

#include "report/goodput_model.h"
#include "report/simulated.h"

namespace duet::app {

using report::SimInputs;
using report::SimOutcome;

SimInputs simulation_inputs(const io::RunConfig& cfg);

// Throws std::invalid_argument naming the config keys when the layout cannot be simulated
// (pp × dp != cluster.gpus, too few micro-batches for the schedule, ...).
SimOutcome simulate_config(const io::RunConfig& cfg);

// The expected goodput of the simulated job: the step time and tokens it simulated, the
// failure rate, restart and save time of goodput.*, the interval checkpoint.every (0 = the
// optimal one). `save_source` says where the save time came from.
struct GoodputPlan {
  report::GoodputModelInputs in;
  report::GoodputModel model;
  double checkpoint_bytes = 0;  // what one save writes, all ranks together
  std::string save_source;
};
GoodputPlan plan_goodput(const io::RunConfig& cfg, const SimOutcome& o);

// Bytes per parameter in a checkpoint: FP32 master weights and two BF16 AdamW moments, as
// DeepSeek-V3 keeps them (TR §3.3.2); the BF16 working weights are a rounding of the master.
constexpr double kCheckpointBytesPerParam = 4 + 2 + 2;

// The names the report prints that the cost model does not carry: run.name, cluster.gpu.
inline report::SimLabels simulation_labels(const io::RunConfig& cfg) { return {cfg.run.name, cfg.cluster.gpu}; }

}  // namespace duet::app
