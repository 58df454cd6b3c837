#pragma once
// What one recovery cost, part by part — pure arithmetic on times the supervisor records on
// its own monotonic clock, so it is unit-tested without a job. From the fault to the first
// completed step of the next attempt:
//
//   fault ─detection→ noticed ─teardown→ job gone ─backoff→ relaunched ─launch→ every rank's
//   process started ─mpi_init→ MPI ready ─setup→ every rank connected (model and optimizer
//   built) ─load→ checkpoint loaded ─first_step→ first step of the attempt completed
//
// A rank's process start is its hello time minus its age (from /proc), so process spawning
// and MPI initialisation are told apart without a clock shared between hosts: each rank only
// measures durations. The parts always add up to total_s.

#include <optional>
#include <string>
#include <vector>

namespace duet::supervisor {

struct FaultClock {
  std::string kind;       // rank-died, hang, job-died, non-finite
  double fault = -1;      // when it happened: the injection's report, else the culprit's last sign of life
  double detected = -1;   // when the policy decided
  double gone = -1;       // when the job's process group was gone
  int fault_step = 0;     // the last step every rank completed before it
};

struct AttemptClock {
  double launched = -1;
  // Per rank, on the supervisor's clock or as the rank measured (seconds); < 0: not yet.
  std::vector<double> hello, age, mpi_init, loaded;
  int checkpoint_step = -1;  // the step it resumed from (0: from scratch; -1: not known yet)
  double first_step = -1;    // when every rank had completed the attempt's first step

  explicit AttemptClock(int ranks = 0)
      : hello(ranks, -1), age(ranks, -1), mpi_init(ranks, -1), loaded(ranks, -1) {}
};

struct RecoveryRecord {
  std::string fault_kind;
  int fault_step = 0, checkpoint_step = 0, recomputed_steps = 0;
  double detection_s = 0, teardown_s = 0, backoff_s = 0, launch_s = 0, mpi_init_s = 0, setup_s = 0, load_s = 0,
         first_step_s = 0, total_s = 0;
};

// The record once the attempt's first step completed; nullopt while anything is missing.
std::optional<RecoveryRecord> account_recovery(const FaultClock& fault, const AttemptClock& attempt);

}  // namespace duet::supervisor
