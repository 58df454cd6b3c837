// 1F1B and ZB1P (ZB-H1), and make_schedule, the one entry point over all kinds.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "scheduler/schedule.h"

namespace duet::sched {

// Stage r: N-1-r warm-up forwards, then one forward and one backward alternately, then the
// remaining backwards. Peak in-flight activations on stage r: min(N-r, M).
Schedule make_1f1b_schedule(int ranks, int microbatches) {
  core::check_schedule_rule(ScheduleKind::OneFOneB, ranks, microbatches);
  Schedule s{ScheduleKind::OneFOneB, ranks, microbatches, {}};
  const int M = microbatches;
  for (int r = 0; r < ranks; ++r) {
    std::vector<Op> ops;
    const int warmup = std::min(ranks - 1 - r, M);
    for (int m = 0; m < warmup; ++m) ops.push_back({OpKind::F, 0, m});
    for (int m = 0; m < M - warmup; ++m) {
      ops.push_back({OpKind::F, 0, warmup + m});
      ops.push_back({OpKind::B, 0, m});
    }
    for (int m = M - warmup; m < M; ++m) ops.push_back({OpKind::B, 0, m});
    s.ops.push_back(std::move(ops));
  }
  return s;
}

// ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism"): the 1F1B order with every backward
// split into I (input gradient, on the critical path) and W (weight gradient, deferred).
// Stage r lets r weight gradients wait - W of micro-batch k runs right after the I of
// micro-batch k + r - so every stage holds at most N micro-batches' activations (from F to
// W), the same peak as 1F1B's first stage, and the waiting W's fill the cool-down bubble.
// With F = I = W the bubble is (N-1)(F+B-2W), a third of 1F1B's.
Schedule make_zb1p_schedule(int ranks, int microbatches) {
  core::check_schedule_rule(ScheduleKind::ZB1P, ranks, microbatches);
  Schedule s{ScheduleKind::ZB1P, ranks, microbatches, {}};
  const int M = microbatches;
  for (int r = 0; r < ranks; ++r) {
    std::vector<Op> ops;
    const int warmup = std::min(ranks - 1 - r, M);
    const int max_deferred = r;
    int next_i = 0, next_w = 0;
    auto input_backward = [&] {
      ops.push_back({OpKind::I, 0, next_i++});
      if (next_i - next_w > max_deferred) ops.push_back({OpKind::W, 0, next_w++});
    };
    for (int m = 0; m < warmup; ++m) ops.push_back({OpKind::F, 0, m});
    for (int m = warmup; m < M; ++m) {
      ops.push_back({OpKind::F, 0, m});
      input_backward();
    }
    while (next_i < M) input_backward();
    while (next_w < M) ops.push_back({OpKind::W, 0, next_w++});
    s.ops.push_back(std::move(ops));
  }
  return s;
}

Schedule make_schedule(ScheduleKind kind, int ranks, int microbatches) {
  switch (kind) {
    case ScheduleKind::OneFOneB: return make_1f1b_schedule(ranks, microbatches);
    case ScheduleKind::ZB1P: return make_zb1p_schedule(ranks, microbatches);
    case ScheduleKind::DualPipe: return make_dualpipe_schedule(ranks, microbatches);
    case ScheduleKind::DualPipeV: return make_dualpipev_schedule(ranks, microbatches);
  }
  throw std::invalid_argument("make_schedule: unknown schedule kind");
}

}  // namespace duet::sched
