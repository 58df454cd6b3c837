#pragma once
// `duet simulate` without the command line: a RunConfig mapped onto the cost model's plain
// structs, one simulated step over every rank, and the report built from it. Shared by
// apps/cmd_simulate.cpp and bench/bench_simulate.cpp.
#include "io/config.h"
#include "report/report.h"
#include "scheduler/cost_model.h"
#include "scheduler/schedule.h"
#include "scheduler/simulate.h"

namespace duet::app {

struct SimInputs {
  sched::ModelShape model;
  sched::ClusterSpec cluster;
  sched::Efficiencies efficiencies;
  sched::Layout layout;
};
SimInputs simulation_inputs(const io::RunConfig& cfg);

struct SimOutcome {
  SimInputs in;
  sched::Schedule schedule;
  sched::JobCost job;
  sched::SimResult result;  // all pp × dp ranks, no timeline
  sched::StepSummary summary;
};

// Throws std::invalid_argument naming the config keys when the layout cannot be simulated
// (pp × dp != cluster.gpus, too few micro-batches for the schedule, ...).
SimOutcome simulate_config(const io::RunConfig& cfg);

// Headline, comparison with the published DeepSeek-V3 figure (for a DeepSeek-V3-shaped
// model), step-time breakdown, per-rank numbers and the timeline of pipeline 0.
report::Report build_report(const io::RunConfig& cfg, const SimOutcome& outcome);

// The published figure: 180K H800 GPU-hours per trillion tokens (DeepSeek-V3 report, §1).
constexpr double kPublishedGpuHoursPerTrillion = 180e3;

}  // namespace duet::app
