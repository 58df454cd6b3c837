#pragma once
// `duet report --run DIR`: the throughput report of a real run, from its metrics.jsonl and
// per-rank traces, in the same format as `duet simulate`. Besides what was measured (step
// time, per-rank busy / bubble / exposed communication), it replays the run's schedule in
// the discrete-event simulator with the per-op costs measured in the same run, so the
// simulator's step time can be checked against the real one.

#include <string>

#include "report/report.h"

namespace duet::runtime {

// Per-rank accounting of one step, from its trace events (seconds).
struct RankStep {
  double window = 0;        // first to last event of the step on this rank
  double busy = 0;          // some thread computing
  double exposed_comm = 0;  // waiting on communication while no thread computes
  double bubble = 0;        // the rest: idle for lack of work
};

// Throws std::runtime_error naming the file when the run directory lacks what is needed
// (config.yaml, metrics.jsonl, trace/rank-*.json: runs with runtime.trace true).
report::Report measured_report(const std::string& run_dir);

}  // namespace duet::runtime
