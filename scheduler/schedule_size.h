#pragma once
// How big a schedule is before it is built: `duet schedule --ranks 100000 --microbatches
// 100000` (or a --validate file whose header says so) must be refused with a message, not
// grow to tens of GB. The validator and the simulator keep tables of ranks × directions ×
// micro-batches entries, the same order as the op count.

#include <cstdint>

#include "scheduler/schedule.h"

namespace duet::sched {

// An upper bound on the ops of a schedule of `kind` with `ranks` pipeline ranks and
// `microbatches` micro-batches (as make_schedule takes them), from the shape alone: each rank
// runs at most F, I and W for each micro-batch of each stage it holds.
std::int64_t schedule_op_bound(ScheduleKind kind, int ranks, int microbatches);

// The most ops duet builds, validates or simulates: 20 M ops is ~0.4 GB of ops and a few GB
// with the validator's and simulator's tables — DeepSeek-V3's PP 16 needs a few thousand.
constexpr std::int64_t kMaxScheduleOps = 20'000'000;

}  // namespace duet::sched
