// DualPipe and DualPipeV, reproducing the per-rank compute order of step() in the reference
// implementation (github.com/deepseek-ai/DualPipe, dualpipe/dualpipe.py and
// dualpipe/dualpipev.py). The eight phases and their labels follow the reference; the
// tests (tests/scheduler/dualpipe_reference_test.cpp) compare against an independent
// transliteration of both step() loops for many (N, C).
//
// Both schedules share one rank program. In the reference a rank calls its two stages
// "phase 0" and "phase 1"; phase 0 is the stage it runs first. In DualPipe the second half
// of the ranks starts with direction 1, so direction = phase XOR (rank >= N/2). In DualPipeV
// phase and direction (leg) coincide. DualPipeV(N, C) rank r runs the program of DualPipe
// rank r with N/2 -> N and C/2 -> C (the "cut in half" of DualPipe(2N, 2C)).
#include <algorithm>
#include <deque>
#include <stdexcept>
#include <string>
#include <utility>

#include "scheduler/schedule.h"

namespace duet::sched {
namespace {

// Records the ops of one rank the way the reference's step() issues them. Micro-batch ids
// are per-direction counters: forwards and backwards of a direction each run in order.
class RankProgram {
 public:
  explicit RankProgram(bool flip) : flip_(flip) {}

  void forward(int phase) {
    int d = dir(phase);
    ops_.push_back({OpKind::F, d, next_f_[d]++});
  }
  // A full backward, or with `zero_bubble` an input-only backward whose weight gradient is
  // queued and run later by weight() - first in, first out, across both directions.
  void backward(int phase, bool zero_bubble) {
    int d = dir(phase);
    int mb = next_b_[d]++;
    if (zero_bubble) {
      ops_.push_back({OpKind::I, d, mb});
      deferred_.push_back({d, mb});
    } else {
      ops_.push_back({OpKind::B, d, mb});
    }
  }
  void weight() {
    if (deferred_.empty()) throw std::logic_error("dualpipe: weight chunk with no deferred weight gradient");
    auto [d, mb] = deferred_.front();
    deferred_.pop_front();
    ops_.push_back({OpKind::W, d, mb});
  }
  // Forward of `phase_f` overlapped with a full backward of `phase_b` (never split).
  void forward_backward(int phase_f, int phase_b) {
    int df = dir(phase_f), db = dir(phase_b);
    int mf = next_f_[df]++;
    int mb = next_b_[db]++;
    ops_.push_back({OpKind::FB, df, mf, db, mb});
  }

  std::vector<Op> finish() {
    if (!deferred_.empty()) throw std::logic_error("dualpipe: deferred weight gradients left at the end of the step");
    return std::move(ops_);
  }

 private:
  int dir(int phase) const { return phase ^ static_cast<int>(flip_); }

  bool flip_;
  int next_f_[2] = {0, 0};
  int next_b_[2] = {0, 0};
  std::deque<std::pair<int, int>> deferred_;  // (dir, micro-batch) of each I, oldest first
  std::vector<Op> ops_;
};

// The rank program of step(). half_ranks = H (N/2 for DualPipe, N for DualPipeV), h = the
// rank's distance from the nearer end of the pipe (min(r, N-1-r); r for DualPipeV),
// chunks = micro-batches per direction, middle = the rank(s) at the fold of the pipe, whose
// first main-step pair is split into a forward and a full backward to shrink the bubble.
std::vector<Op> dualpipe_rank_program(int half_ranks, int h, int chunks, bool middle, bool flip) {
  RankProgram p(flip);
  const int H = half_ranks;

  // Step 1: nF0 - warm-up forwards of the rank's first stage.
  for (int i = 0; i < (H - h - 1) * 2; ++i) p.forward(0);

  // Step 2: nF0F1 - forwards of both stages, alternating.
  for (int i = 0; i < h + 1; ++i) {
    p.forward(0);
    p.forward(1);
  }

  // Step 3: nB1W1F1 - zero bubble: input-only backward, its weight right away, a forward.
  for (int i = 0; i < H - h - 1; ++i) {
    p.backward(1, /*zero_bubble=*/true);
    p.weight();
    p.forward(1);
  }

  // Step 4 (main step): nF0B1F1B0 - overlapped pairs in both orders.
  const int main_steps = chunks - 2 * H + h + 1;
  for (int i = 0; i < main_steps; ++i) {
    if (i == 0 && middle) {
      p.forward(0);
      p.backward(1, false);
    } else {
      p.forward_backward(0, 1);
    }
    p.forward_backward(1, 0);
  }

  // Step 5: nB1F1B0 - a backward, then a pair.
  for (int i = 0; i < H - h - 1; ++i) {
    p.backward(1, false);
    p.forward_backward(1, 0);
  }

  // Step 6: nB1B0 - backwards of both stages; from the middle of this phase on they switch
  // to input-only (zero bubble). For odd h the switch comes before the B1 of that
  // iteration, for even h between its B1 and B0.
  const int step6 = h + 1;
  bool zero_bubble = false;
  for (int i = 0; i < step6; ++i) {
    if (i == step6 / 2 && h % 2 == 1) zero_bubble = true;
    p.backward(1, zero_bubble);
    if (i == step6 / 2 && h % 2 == 0) zero_bubble = true;
    p.backward(0, zero_bubble);
  }

  // Step 7: nWB0 - a deferred weight, then an input-only backward.
  for (int i = 0; i < H - h - 1; ++i) {
    p.weight();
    p.backward(0, true);
  }

  // Step 8: nW - the remaining deferred weights.
  for (int i = 0; i < h + 1; ++i) p.weight();

  return p.finish();
}

}  // namespace

Schedule make_dualpipe_schedule(int ranks, int microbatches) {
  core::check_schedule_rule(ScheduleKind::DualPipe, ranks, microbatches);
  Schedule s{ScheduleKind::DualPipe, ranks, microbatches, {}};
  const int H = ranks / 2;
  for (int r = 0; r < ranks; ++r) {
    int h = std::min(r, ranks - 1 - r);
    bool middle = r == H - 1 || r == H;
    s.ops.push_back(dualpipe_rank_program(H, h, microbatches / 2, middle, /*flip=*/r >= H));
  }
  return s;
}

Schedule make_dualpipev_schedule(int ranks, int microbatches) {
  core::check_schedule_rule(ScheduleKind::DualPipeV, ranks, microbatches);
  Schedule s{ScheduleKind::DualPipeV, ranks, microbatches, {}};
  for (int r = 0; r < ranks; ++r)
    s.ops.push_back(dualpipe_rank_program(ranks, r, microbatches, /*middle=*/r == ranks - 1, /*flip=*/false));
  return s;
}

}  // namespace duet::sched
