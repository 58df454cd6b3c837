#pragma once
// Goodput of a supervised run: how much of the wall time went into steps that count, and
// where the rest went, per interruption. Pure: the inputs are the supervisor's records
// (events.jsonl) and the per-step lines of metrics.jsonl, already parsed; nothing here reads
// a file (report/goodput_read.h does) or renders (report/goodput_report.h does).
//
// The wall time, from the first `launched` to `finished`, is split without overlap into
//   productive    step time of the steps that count (each step's last run), less the time
//                 it waited for a checkpoint save
//   checkpoint    time those steps waited for a checkpoint save (checkpoint_wait_s)
//   recomputed    step time of steps that ran again after a restart (run since the last
//                 checkpoint, lost at the fault)
//   start-up      attempt 1: launch to the run header written before its first step (whole
//                 seconds: both clocks are; see startup_s)
//   recovery      per interruption, from its `recovered` record: detection, teardown, backoff,
//                 launch, MPI init, set-up, checkpoint load, first step; the first step's own
//                 step time is left out here (it counts as productive)
//   other         the rest: validation passes, the step cut short by each fault, attempts
//                 that failed before completing a step, the final save and shutdown
// Effective training time (ETTR) = productive / wall.

#include <optional>
#include <string>
#include <vector>

namespace duet::report {

// The numbers of a `recovered` record: the first step of an attempt > 1 completed.
struct Recovery {
  int fault_step = 0;        // last step completed before the fault
  int checkpoint_step = 0;   // the step the attempt resumed from; 0 = from scratch
  int recomputed_steps = 0;  // fault_step - checkpoint_step
  double detection_s = 0;    // fault -> the supervisor noticed
  double teardown_s = 0;     // noticed -> the job gone
  double backoff_s = 0;      // waiting before the relaunch
  double launch_s = 0;       // launch -> ranks running
  double mpi_init_s = 0;
  double setup_s = 0;        // model and optimizer built
  double load_s = 0;         // checkpoint load
  double first_step_s = 0;   // load done -> first step completed (with the initial validation)
  double total_s = 0;        // fault -> first step completed
  double parts_s() const {
    return detection_s + teardown_s + backoff_s + launch_s + mpi_init_s + setup_s + load_s + first_step_s;
  }
};

// One line of events.jsonl.
struct SupervisorEvent {
  double time = 0;       // unix seconds
  double elapsed_s = 0;  // since the supervisor started, monotonic
  std::string kind;      // launched, checkpoint, rank-died, hang, job-died, non-finite, recovered, finished, ...
  int attempt = 0;
  std::vector<int> ranks;
  std::string cause;
  std::optional<int> step, exit_code;
  std::string layout;  // launched: "pp 2 x dp 2 x ep 1"
  Recovery recovery;   // kind == "recovered"
};

// True for the kinds that end an attempt by a fault.
bool is_fault_kind(const std::string& kind);

// metrics.jsonl, as written: every job (one start of `duet train` in the run directory, marked
// by its {"event":"run"} header) and every step line in file order.
struct MetricsJob {
  int start_step = 0;  // the header's start_step: the step it resumed from
  double time = -1;    // the header's time, unix seconds; -1 = unknown
};
struct MetricsStep {
  int job = 0;  // index into StepHistory::jobs
  int step = 0;
  double step_time_s = 0;
  double checkpoint_wait_s = 0;  // part of step_time_s spent waiting for a checkpoint save
};
struct StepHistory {
  std::vector<MetricsJob> jobs;  // a file without headers: one job from step 0
  std::vector<MetricsStep> steps;
};

// One interruption: a fault, and the attempt launched after it.
struct Interruption {
  int attempt = 0;          // the attempt that recovered
  std::string fault_kind;   // rank-died, hang, ... ("" when no fault record was found)
  std::string cause;
  Recovery recovery;
  bool recovery_known = false;  // a `recovered` record was found (else the parts are 0, in "other")
  double recomputed_s = 0;      // measured step time of the steps run again
  bool recomputed_measured = false;  // false: metrics.jsonl did not show which job re-ran them
  double first_step_time_s = 0;  // step time of the first step, in first_step_s and in productive
  double badput_s() const { return recovery.parts_s() - first_step_time_s + recomputed_s; }
};

// One attempt on the timeline, seconds since the first launch.
struct AttemptSpan {
  int attempt = 0;
  double launched_s = 0;
  double training_from_s = 0;  // its first step began (start-up or recovery done)
  double end_s = 0;            // the fault, or the end of the run
  std::string end;             // "finished", a fault kind, or "running" (no record of its end)
  double recomputed_s = 0;     // of its steps, lost at its end
};

struct Goodput {
  bool finished = false;  // a `finished` record was found (else the wall time ends at the last record)
  int exit_code = 0;
  double wall_s = 0;
  double productive_s = 0, checkpoint_s = 0, recomputed_s = 0, startup_s = 0, recovery_s = 0, other_s = 0;
  int steps_counted = 0, steps_recomputed = 0;
  int attempts = 0;
  std::vector<Interruption> interruptions;
  std::vector<AttemptSpan> spans;
  std::vector<std::string> notes;  // what could not be matched, and what that means
  double ettr() const { return wall_s > 0 ? productive_s / wall_s : 0; }
};

// Throws std::invalid_argument when there is no `launched` record to measure from.
Goodput account_goodput(const std::vector<SupervisorEvent>& events, const StepHistory& metrics);

}  // namespace duet::report
