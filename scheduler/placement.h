#pragma once
// Stage placement: which model stage each (rank, direction) runs, and therefore where a
// forward's activation goes and where a backward's gradient comes from. Everything the
// engine needs to route point-to-point traffic is answered here; nothing is hand-written in
// a schedule.
//
//   kind       dirs  model copies  stages/copy  (rank r, dir d) runs
//   1f1b, zb1p  1      1             N           stage r
//   dualpipe    2      2             N           d=0: stage r of copy 0 (flows rank 0 -> N-1)
//                                                d=1: stage N-1-r of copy 1 (flows N-1 -> 0)
//   dualpipev   2      1             2N          d=0: stage r (first leg, rank 0 -> N-1)
//                                                d=1: stage 2N-1-r (second leg, N-1 -> 0)
//
// A "model copy" is one copy of the model a micro-batch flows through from stage 0 to the
// last stage: DualPipe keeps two (one per direction, parameters 2x), DualPipeV one cut into
// 2N stages folded into a V. (A "pipeline" is the N ranks themselves; a "slot" is one
// (rank, direction) — where a stage runs. docs/architecture.md has the glossary.) In DualPipeV the turn from stage N-1 to stage N stays on
// rank N-1: prev/next of those slots are on the same rank and need no transfer.
#include <string>
#include <string_view>

#include "core/schedule_kind.h"

namespace duet::sched {

// The schedule kinds, their names and micro-batch rules are shared with config and layout
// code: core/schedule_kind.h.
using core::format_schedule_kind;
using core::parse_schedule_kind;
using core::ScheduleKind;

// Where one stage runs: rank and the direction index of that rank's ops. rank -1 = none
// (before the first stage or after the last).
struct Slot {
  int rank = -1;
  int dir = -1;
  bool valid() const { return rank >= 0; }
  friend bool operator==(const Slot&, const Slot&) = default;
};

class Placement {
 public:
  Placement(ScheduleKind kind, int ranks);

  ScheduleKind kind() const { return kind_; }
  int ranks() const { return ranks_; }
  int num_dirs() const;        // valid Op::dir values are [0, num_dirs())
  int num_model_copies() const;
  int num_stages() const;          // stages in one model copy
  int model_copy_of(int dir) const;  // which model copy ops of direction `dir` belong to

  int stage_of(int rank, int dir) const;
  Slot slot_of(int model_copy, int stage) const;  // the owner of a stage

  // The slot that receives the forward activation of (rank, dir) and sends back its
  // gradient; invalid when (rank, dir) is the last stage (it computes the loss).
  Slot next(int rank, int dir) const;
  // The slot whose forward activation (rank, dir) consumes and to which it sends the input
  // gradient; invalid when (rank, dir) is the first stage (it reads the data).
  Slot prev(int rank, int dir) const;
  int next_rank(int rank, int dir) const { return next(rank, dir).rank; }
  int prev_rank(int rank, int dir) const { return prev(rank, dir).rank; }
  bool is_first_stage(int rank, int dir) const { return !prev(rank, dir).valid(); }
  bool is_last_stage(int rank, int dir) const { return !next(rank, dir).valid(); }

 private:
  ScheduleKind kind_;
  int ranks_;
};

}  // namespace duet::sched
