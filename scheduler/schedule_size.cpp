#include "scheduler/schedule_size.h"

#include <algorithm>

namespace duet::sched {

std::int64_t schedule_op_bound(ScheduleKind kind, int ranks, int microbatches) {
  const double stages_per_rank = kind == ScheduleKind::DualPipeV ? 2 : 1;
  const double ops = 3 * stages_per_rank * std::max(0, ranks) * (double)std::max(0, microbatches);
  return (std::int64_t)std::min(ops, 9e18);  // saturates: ranks and micro-batches are ints
}

}  // namespace duet::sched
