#pragma once
// `duet report --run DIR`: the throughput report of a real run, from its metrics.jsonl and
// per-rank traces, in the same format as `duet simulate`. Besides what was measured (step
// time, per-rank busy / waiting for a core / exposed communication / bubble:
// report/accounting.h), it replays the run's schedule in the discrete-event simulator with
// the per-op costs measured in the same run, so the simulator's step time can be checked
// against the real one.
//
// The replay prices ops by their compute net of waiting for a core, and the simulator gives
// every rank a core of its own. When ranks share cores (RunShape::cores < ranks) they take
// turns: a step then takes at least the CPU work of all ranks divided by the cores, plus the
// gradient sync and optimizer, and the prediction is the larger of that and the simulated
// step. The CPU work is what the ranks' executors used (metrics cpu_s: their ops, and the CPU
// their waits took) or, in metrics without it, the replayed ops' compute.
//
// report/ does not read config.yaml (io/ does): the caller passes the run's shape.

#include <string>
#include <vector>

#include "core/schedule_kind.h"
#include "core/trace_event.h"
#include "report/report.h"

namespace duet::report {

// What the measured report needs to know of the run's config.
struct RunShape {
  int pp = 1, dp = 1, ep = 1;  // world = pp · dp ranks, one trace file each
  core::ScheduleKind schedule = core::ScheduleKind::DualPipe;  // as run (core::effective_schedule)
  int microbatches_per_pipeline = 1;  // core::microbatches_per_pipeline
  int global_batch = 1;               // sequences per step
  int micro_batch_size = 1;
  int seq_len = 1;
  int d_model = 1;                    // activation of one micro-batch: micro_batch_size · seq_len · d_model floats
  double comm_delay_us = 0;           // per message; the send latency when the traces hold no send
  // Cores the run's ranks shared (0: at least one per rank). With more ranks than cores the
  // replay adds what one-core-per-rank simulation cannot see: the ranks' compute queued on
  // the cores (see measured_report).
  int cores = 0;
};

// One line of metrics.jsonl.
struct StepMetrics {
  int step = 0;
  double step_time = 0, tokens_per_s = 0, grad_sync = 0;  // seconds, tokens/s, seconds
  bool eval = false;                                      // the step ran an evaluation
  double cpu_s = 0;  // CPU time of the executors in the engine's part of the step, mean per rank; 0: none
};

// Reads metrics.jsonl (one JSON object a line; lines without "step" are skipped). Throws
// std::runtime_error naming the path when it cannot be read or holds no step.
std::vector<StepMetrics> read_metrics(const std::string& path);

// The report of a run named `name` from its metrics and traces[rank] (every rank's events,
// all steps). Pure: no files.
Report measured_report(const std::string& name, const RunShape& shape, const std::vector<StepMetrics>& metrics,
                       const std::vector<std::vector<core::TraceEvent>>& traces);

// The same from the run directory: metrics.jsonl and trace/rank-NNNNN.json. Throws
// std::runtime_error naming the file when one is missing (traces: runs with runtime.trace true).
Report measured_report(const std::string& run_dir, const RunShape& shape);

}  // namespace duet::report
