#pragma once
// The validator: proves a schedule - generated or written by hand - complete, well ordered
// and free of deadlock under the engine's communication contract (scheduler/comm.h).
//
// Rules, by the name an error carries:
//   shape                  one op list per rank
//   op-range               dir in [0, num_dirs), micro-batch in [0, microbatches_per_dir);
//                          FB has both halves, other kinds leave dir2/microbatch2 at -1
//   forward-once           each stage (rank, dir) runs F exactly once per micro-batch
//   backward-once          ... and exactly one backward (B, I, or the B half of an FB)
//   backward-after-forward a backward comes after the forward of its micro-batch, on its rank
//   weight-after-input     each I is followed by exactly one W of the same (dir, micro-batch);
//                          a W needs a pending I (a full B leaves nothing to defer)
//   weight-fifo            W's run the deferred weight gradients first in, first out (the
//                          engine keeps them in one queue per rank, like the reference)
//   deadlock               every op's received inputs can arrive: running all ranks in order
//                          with non-blocking sends, every rank reaches its end
// Errors name the rank, the op's position (0-based index into the rank's list; -1 when the
// error is about something missing) and the rule.
#include <string>
#include <vector>

#include "scheduler/schedule.h"

namespace duet::sched {

struct ValidationError {
  int rank;
  int position;      // index of the offending op in ops[rank]; -1 when something is missing
  std::string op;    // that op in the text format, "" when position is -1
  std::string rule;  // one of the names above
  std::string message;
  std::string to_string() const;  // "rank 2, op 5 (B0:3): ... [backward-after-forward]"
};

struct ValidationReport {
  std::vector<ValidationError> errors;
  // Per rank: the most micro-batch chunks whose forward has run and whose backward (B or I)
  // has not, at any point of the rank's op list (an FB pair counts its forward first).
  // DualPipe reaches N+1 on every rank, DualPipeV 2N+1, 1F1B and ZB1P min(N-r, M) on rank r.
  std::vector<int> peak_activations;
  bool ok() const { return errors.empty(); }
};

// Checks every rule; stops collecting after `max_errors` errors. The deadlock check runs
// only when the per-rank rules hold (it would only repeat their errors).
ValidationReport validate_schedule(const Schedule& schedule, int max_errors = 20);

// validate_schedule, throwing std::invalid_argument with the errors (one per line) when
// there are any.
void check_schedule(const Schedule& schedule);

}  // namespace duet::sched
