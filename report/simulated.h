#pragma once
// The report of `duet simulate`: one simulated step of every rank of a job, from the cost
// model's plain structs (scheduler/cost_model.h). apps/simulate_job.h maps a RunConfig onto
// SimInputs and runs the simulation; this file turns its outcome into a Report.

#include <string>

#include "report/report.h"
#include "scheduler/cost_model.h"
#include "scheduler/schedule.h"
#include "scheduler/simulate.h"

namespace duet::report {

struct SimInputs {
  sched::ModelShape model;
  sched::ClusterSpec cluster;
  sched::Efficiencies efficiencies;
  sched::Layout layout;
};

struct SimOutcome {
  SimInputs in;
  sched::Schedule schedule;
  sched::JobCost job;
  sched::SimResult result;  // all pp × dp ranks, no timeline
  sched::StepSummary summary;
};

// The names the report prints that the cost model does not carry.
struct SimLabels {
  std::string run_name;  // run.name
  std::string gpu;       // cluster.gpu, "H800"
};

// Headline, comparison with the published DeepSeek-V3 figure (for a DeepSeek-V3-shaped
// model), step-time breakdown, per-rank numbers and the timeline of pipeline 0 (simulated
// again with its events recorded).
Report simulated_report(const SimOutcome& outcome, const SimLabels& labels);

// The published figure: 180K H800 GPU-hours per trillion tokens (DeepSeek-V3 report, §1).
constexpr double kPublishedGpuHoursPerTrillion = 180e3;

}  // namespace duet::report
