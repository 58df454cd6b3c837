#pragma once
// Schedules as data: for each pipeline rank, the ordered list of compute ops it runs in one
// training step. One representation feeds the engine (runs it), the validator (proves it
// complete and deadlock-free) and the simulator (times it). Communication is never written
// in a schedule: it follows from stage placement (scheduler/placement.h, scheduler/comm.h).
//
// Vocabulary (DualPipe's): a "chunk" is one stage's share of one micro-batch; F = forward,
// B = full backward, I = backward for the input only, W = the weight gradient an I deferred,
// FB = a forward and a full backward of two different chunks overlapped as one pair.
#include <string>
#include <string_view>
#include <vector>

#include "scheduler/placement.h"

namespace duet::sched {

enum class OpKind { F, B, I, W, FB };

// One compute op on one rank. `dir` selects which of the rank's stages runs it (see
// Placement); micro-batch ids count from 0 within a direction. For FB, (dir, microbatch) is
// the forward half and (dir2, microbatch2) the backward half; for every other kind dir2 and
// microbatch2 stay -1.
struct Op {
  OpKind kind;
  int dir;
  int microbatch;
  int dir2 = -1, microbatch2 = -1;

  friend bool operator==(const Op&, const Op&) = default;
};

struct Schedule {
  ScheduleKind kind = ScheduleKind::OneFOneB;
  int ranks = 0;
  // Micro-batches in the whole step, as given to make_schedule: for DualPipe both directions
  // together (C; each direction gets C/2), for DualPipeV, 1F1B and ZB1P the number that
  // passes through the pipeline (each goes through both DualPipeV legs).
  int microbatches = 0;
  std::vector<std::vector<Op>> ops;  // ops[rank], in execution order

  Placement placement() const { return Placement(kind, ranks); }
  // Range of Op::microbatch: [0, microbatches_per_dir()).
  int microbatches_per_dir() const {
    return kind == ScheduleKind::DualPipe ? microbatches / 2 : microbatches;
  }
  friend bool operator==(const Schedule&, const Schedule&) = default;
};

// Builds the schedule of `kind` for `ranks` pipeline ranks and `microbatches` micro-batches
// (meaning as in Schedule::microbatches). Throws std::invalid_argument naming the broken
// rule when the combination is not valid:
//   all:        ranks >= 1, microbatches >= 1
//   dualpipe:   ranks even, microbatches even, microbatches >= 2 x ranks
//   dualpipev:  microbatches >= 2 x ranks
Schedule make_schedule(ScheduleKind kind, int ranks, int microbatches);

Schedule make_1f1b_schedule(int ranks, int microbatches);
Schedule make_zb1p_schedule(int ranks, int microbatches);
Schedule make_dualpipe_schedule(int ranks, int microbatches);
Schedule make_dualpipev_schedule(int ranks, int microbatches);

// "F0:3", "B1:2", "I0:0", "W1:4", "F0:3&B1:1" (the text format of one op).
std::string format_op(const Op& op);
// Inverse of format_op; throws std::invalid_argument naming the token on malformed input.
Op parse_op(std::string_view token);

}  // namespace duet::sched
