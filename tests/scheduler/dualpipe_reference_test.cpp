// DualPipe and DualPipeV against the reference implementation
// (github.com/deepseek-ai/DualPipe, step() of dualpipe/dualpipe.py and dualpipev.py).
//
// ReferenceTrace below is a line-by-line transliteration of the reference's control flow:
// the same per-rank state (chunk counters, WeightGradStore with its cache and FIFO queue),
// the same helper methods and the same eight loops of step(). Instead of computing it
// records which chunk each compute call touches. Communication calls are kept (as no-ops)
// so the loops read like the original. It shares no code with the generator
// (scheduler/generate_dualpipe.cpp), which is written as a rank program over phases.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "scheduler/schedule.h"
#include "scheduler/text_format.h"
#include "scheduler/validate.h"

namespace duet::sched {
namespace {

class ReferenceTrace {
 public:
  // dualpipe_v selects dualpipev.py's step(); otherwise dualpipe.py's.
  ReferenceTrace(bool dualpipe_v, int rank, int num_ranks) : v_(dualpipe_v), rank(rank), num_ranks(num_ranks) {
    is_first_rank = rank == 0;
    is_last_rank = rank == num_ranks - 1;
    is_in_second_half = v_ ? false : rank >= num_ranks / 2;
    is_middle_rank = v_ ? false : (rank == num_ranks / 2 - 1) || (rank == num_ranks / 2);
  }

  std::vector<std::string> step(int num_chunks) { return v_ ? step_v(num_chunks) : step_dualpipe(num_chunks); }

 private:
  // --- WeightGradStore (dualpipe/utils.py) ---
  struct WeightGradStore {
    bool enabled = false;
    std::vector<std::string> cache;
    std::deque<std::vector<std::string>> funcs_queue;
    void put(const std::string& f) { cache.push_back(f); }
    void flush() {
      funcs_queue.push_back(cache);
      cache.clear();
    }
    std::vector<std::string> pop() {
      EXPECT_FALSE(funcs_queue.empty()) << "Pop empty queue.";
      if (funcs_queue.empty()) return {};
      auto funcs = funcs_queue.front();
      funcs_queue.pop_front();
      return funcs;
    }
  } store;

  static std::string chunk(char what, int phase, int id) {
    return what + std::to_string(phase) + ":" + std::to_string(id);
  }

  // --- compute helpers: record instead of running ---
  void _forward_compute_chunk(int phase) {
    if (!v_) phase ^= is_in_second_half;
    int chunk_id = current_f_chunk_id[phase];
    current_f_chunk_id[phase] += 1;
    ops.push_back(chunk('F', phase, chunk_id));
  }

  // Running the backward with the store enabled queues its weight-gradient closures
  // instead of running them: that backward computes the input gradient only.
  std::string run_backward(int phase, int chunk_id) {
    if (store.enabled) {
      store.put(chunk('W', phase, chunk_id));
      return chunk('I', phase, chunk_id);
    }
    return chunk('B', phase, chunk_id);
  }

  void _backward_compute_chunk(int phase, bool enable_zb = false) {
    if (!v_) phase ^= is_in_second_half;
    int chunk_id = current_b_chunk_id[phase];
    current_b_chunk_id[phase] += 1;
    store.enabled = enable_zb;
    ops.push_back(run_backward(phase, chunk_id));
    store.enabled = false;
    if (enable_zb) store.flush();
  }

  // The overlapped path (modules with overlapped_forward_backward); the store stays
  // disabled, so its backward is full.
  void _forward_backward_compute_chunk(int phase0, int phase1) {
    if (!v_) phase0 ^= is_in_second_half;
    int chunk_id0 = current_f_chunk_id[phase0];
    current_f_chunk_id[phase0] += 1;
    if (!v_) phase1 ^= is_in_second_half;
    int chunk_id1 = current_b_chunk_id[phase1];
    current_b_chunk_id[phase1] += 1;
    ops.push_back(chunk('F', phase0, chunk_id0) + "&" + run_backward(phase1, chunk_id1));
  }

  // --- communication: no-ops here ---
  void _recv_forward(int) {}
  void _send_forward(int) {}
  void _recv_backward(int) {}
  void _send_backward(int) {}
  void _commit_and_wait_comm() {}

  void _forward_chunk(int phase, bool recv = true, bool send = true) {
    if (recv) _recv_forward(phase);
    _commit_and_wait_comm();
    _forward_compute_chunk(phase);
    if (send) _send_forward(phase);
  }
  void _backward_chunk(int phase, bool enable_zb = false, bool recv = true, bool send = true) {
    if (recv) _recv_backward(phase);
    _commit_and_wait_comm();
    _backward_compute_chunk(phase, enable_zb);
    if (send) _send_backward(phase);
  }
  void _forward_backward_chunk(int phase0, int phase1, bool recv0 = true) {
    if (recv0) _recv_forward(phase0);
    _recv_backward(phase1);
    _commit_and_wait_comm();
    _forward_backward_compute_chunk(phase0, phase1);
    _send_forward(phase0);
    _send_backward(phase1);
  }
  void _weight_chunk() {
    _commit_and_wait_comm();
    for (const auto& f : store.pop()) ops.push_back(f);  // Assume FIFO
  }

  // --- dualpipe.py step() ---
  std::vector<std::string> step_dualpipe(int num_chunks) {
    int num_half_ranks = num_ranks / 2;
    int half_rank = std::min(rank, num_ranks - 1 - rank);
    int half_num_chunks = num_chunks / 2;

    // Step 1: nF0
    int step_1 = (num_half_ranks - half_rank - 1) * 2;
    for (int i = 0; i < step_1; ++i) _forward_chunk(0);

    // Step 2: nF0F1
    int step_2 = half_rank + 1;
    _recv_forward(0);
    for (int i = 0; i < step_2; ++i) {
      _forward_chunk(0, false, is_middle_rank);
      _recv_forward(0);
      _forward_chunk(1, true, (!is_middle_rank) || (i < step_2 - 1));
      if (!is_middle_rank) _send_forward(0);
    }

    // Step 3: nB1W1F1
    int step_3 = num_half_ranks - half_rank - 1;
    for (int i = 0; i < step_3; ++i) {
      _backward_chunk(1, true);
      _recv_forward(1);
      _weight_chunk();
      _forward_chunk(1, false);
    }

    // Step 4 (Main step): nF0B1F1B0
    int step_4 = half_num_chunks - num_ranks + half_rank + 1;
    for (int i = 0; i < step_4; ++i) {
      if (i == 0) {
        if (is_middle_rank) {
          _forward_chunk(0, false, false);
          _send_forward(1);
          _backward_chunk(1, false, true, false);
          _send_forward(0);
          _send_backward(1);
        } else {
          _forward_backward_chunk(0, 1, false);
        }
      } else {
        _forward_backward_chunk(0, 1);
      }
      _forward_backward_chunk(1, 0);
    }

    // Step 5: nB1F1B0
    int step_5 = num_half_ranks - half_rank - 1;
    for (int i = 0; i < step_5; ++i) {
      _backward_chunk(1);
      _forward_backward_chunk(1, 0);
    }

    // Step 6: nB1B0
    int step_6 = half_rank + 1;
    bool enable_zb = false;
    for (int i = 0; i < step_6; ++i) {
      if (i == step_6 / 2 && half_rank % 2 == 1) enable_zb = true;
      _backward_chunk(1, enable_zb);
      if (i == step_6 / 2 && half_rank % 2 == 0) enable_zb = true;
      _backward_chunk(0, enable_zb);
    }

    // Step 7: nWB0
    int step_7 = num_half_ranks - half_rank - 1;
    for (int i = 0; i < step_7; ++i) {
      _weight_chunk();
      _backward_chunk(0, true);
    }

    // Step 8: nW
    int step_8 = half_rank + 1;
    for (int i = 0; i < step_8; ++i) _weight_chunk();
    EXPECT_TRUE(store.funcs_queue.empty());
    return ops;
  }

  // --- dualpipev.py step() ---
  std::vector<std::string> step_v(int num_chunks) {
    // Step 1: nF0
    int step_1 = (num_ranks - rank - 1) * 2;
    for (int i = 0; i < step_1; ++i) _forward_chunk(0);

    // Step 2: nF0F1
    int step_2 = rank + 1;
    _recv_forward(0);
    for (int i = 0; i < step_2; ++i) {
      _forward_chunk(0, false, false);
      _recv_forward(0);
      _forward_chunk(1, true, (!is_last_rank) || (i < step_2 - 1));
      _send_forward(0);
    }

    // Step 3: nB1W1F1
    int step_3 = num_ranks - rank - 1;
    for (int i = 0; i < step_3; ++i) {
      _backward_chunk(1, true);
      _recv_forward(1);
      _weight_chunk();
      _forward_chunk(1, false);
    }

    // Step 4 (Main step): nF0B1F1B0
    int step_4 = num_chunks - num_ranks * 2 + rank + 1;
    for (int i = 0; i < step_4; ++i) {
      if (i == 0) {
        if (is_last_rank) {
          _forward_chunk(0, false, false);
          _send_forward(1);
          _backward_chunk(1, false, true, false);
          _send_forward(0);
          _send_backward(1);
        } else {
          _forward_backward_chunk(0, 1, false);
        }
      } else {
        _forward_backward_chunk(0, 1);
      }
      _forward_backward_chunk(1, 0);
    }

    // Step 5: nB1F1B0
    int step_5 = num_ranks - rank - 1;
    for (int i = 0; i < step_5; ++i) {
      _backward_chunk(1);
      _forward_backward_chunk(1, 0);
    }

    // Step 6: nB1B0
    int step_6 = rank + 1;
    bool enable_zb = false;
    for (int i = 0; i < step_6; ++i) {
      if (i == step_6 / 2 && rank % 2 == 1) enable_zb = true;
      _backward_chunk(1, enable_zb);
      if (i == step_6 / 2 && rank % 2 == 0) enable_zb = true;
      _backward_chunk(0, enable_zb);
    }

    // Step 7: nWB0
    int step_7 = num_ranks - rank - 1;
    for (int i = 0; i < step_7; ++i) {
      _weight_chunk();
      _backward_chunk(0, true);
    }

    // Step 8: nW
    int step_8 = rank + 1;
    for (int i = 0; i < step_8; ++i) _weight_chunk();
    EXPECT_TRUE(store.funcs_queue.empty());
    return ops;
  }

  bool v_;
  int rank, num_ranks;
  bool is_first_rank, is_last_rank, is_in_second_half, is_middle_rank;
  int current_f_chunk_id[2] = {0, 0};
  int current_b_chunk_id[2] = {0, 0};
  std::vector<std::string> ops;
};

std::vector<std::string> generated(const Schedule& s, int rank) {
  std::vector<std::string> out;
  for (const Op& op : s.ops[rank]) out.push_back(format_op(op));
  return out;
}

void expect_matches_reference(bool v, int N, int C) {
  Schedule s = v ? make_dualpipev_schedule(N, C) : make_dualpipe_schedule(N, C);
  ASSERT_EQ(s.ranks, N);
  for (int r = 0; r < N; ++r) {
    ReferenceTrace ref(v, r, N);
    EXPECT_EQ(generated(s, r), ref.step(C)) << (v ? "dualpipev" : "dualpipe") << " N=" << N << " C=" << C
                                             << " rank " << r;
  }
}

TEST(DualPipeReference, EveryRankMatchesStepForManyShapes) {
  int cases = 0;
  for (int N : {2, 4, 6, 8, 10, 16}) {
    for (int C : {2 * N, 2 * N + 2, 2 * N + 4, 3 * N + (3 * N) % 2, 4 * N + 6, 10 * N}) {
      expect_matches_reference(false, N, C);
      ++cases;
    }
  }
  EXPECT_EQ(cases, 36);
}

TEST(DualPipeVReference, EveryRankMatchesStepForManyShapes) {
  for (int N : {1, 2, 3, 4, 5, 8, 16})
    for (int C : {2 * N, 2 * N + 1, 2 * N + 2, 3 * N + 1, 5 * N, 7 * N + 3}) expect_matches_reference(true, N, C);
}

TEST(DualPipeReference, RankZeroExampleFromTheRefs) {
  // shared/refs/dualpipe.md: DualPipe N=4, C=8, rank 0 begins so.
  std::string line = format_schedule_text(make_dualpipe_schedule(4, 8));
  EXPECT_NE(line.find("\n0: F0:0 F0:1 F0:2 F1:0 I1:0 W1:0 F1:1 F0:3&B1:1 "), std::string::npos) << line;
}

TEST(DualPipeReference, ReadmeFigureRankZeroWarmUp) {
  // The README figure (8 ranks, 20 micro-batches): device 0 runs forwards 0..6 of its first
  // direction, then alternates reverse-direction chunks with zero-bubble backwards.
  Schedule s = make_dualpipe_schedule(8, 20);
  auto ops = generated(s, 0);
  std::vector<std::string> head(ops.begin(), ops.begin() + 11);
  EXPECT_EQ(head, (std::vector<std::string>{"F0:0", "F0:1", "F0:2", "F0:3", "F0:4", "F0:5", "F0:6", "F1:0", "I1:0",
                                            "W1:0", "F1:1"}));
  // The last rank mirrors it with the directions swapped.
  auto last = generated(s, 7);
  EXPECT_EQ(last[0], "F1:0");
  EXPECT_EQ(last[7], "F0:0");
  EXPECT_EQ(last[8], "I0:0");
}

TEST(DualPipeReference, MiddleRanksSplitTheirFirstMainStepPair) {
  // N=8: middle ranks 3 and 4 run their first main-step pair as a forward then a full
  // backward; every other rank overlaps it.
  Schedule s = make_dualpipe_schedule(8, 20);
  for (int r = 0; r < 8; ++r) {
    const auto& ops = s.ops[r];
    auto first_pair_or_split = std::find_if(ops.begin(), ops.end(), [](const Op& op) {
      return op.kind == OpKind::FB || op.kind == OpKind::B;
    });
    ASSERT_NE(first_pair_or_split, ops.end());
    bool middle = r == 3 || r == 4;
    EXPECT_EQ(first_pair_or_split->kind, middle ? OpKind::B : OpKind::FB) << "rank " << r;
  }
}

TEST(DualPipeVReference, IsTheFirstHalfOfDualPipeTwiceAsLarge) {
  // refs: DualPipeV(N, C) rank r runs the compute order of DualPipe(2N, 2C) rank r.
  for (int N : {1, 2, 3, 4, 8}) {
    for (int C : {2 * N, 3 * N + 1}) {
      Schedule v = make_dualpipev_schedule(N, C), d = make_dualpipe_schedule(2 * N, 2 * C);
      for (int r = 0; r < N; ++r) EXPECT_EQ(v.ops[r], d.ops[r]) << "N=" << N << " C=" << C << " rank " << r;
    }
  }
}

TEST(DualPipeReference, PeakActivationsAreRanksPlusOne) {
  // README table: DualPipe holds PP+1 activations per device, DualPipeV 2N+1 chunks on N ranks.
  for (int N : {2, 4, 8, 16}) {
    ValidationReport rep = validate_schedule(make_dualpipe_schedule(N, 2 * N + 6));
    ASSERT_TRUE(rep.ok());
    for (int r = 0; r < N; ++r) EXPECT_EQ(rep.peak_activations[r], N + 1) << "dualpipe N=" << N << " rank " << r;
    ValidationReport repv = validate_schedule(make_dualpipev_schedule(N, 3 * N));
    ASSERT_TRUE(repv.ok());
    for (int r = 0; r < N; ++r) EXPECT_EQ(repv.peak_activations[r], 2 * N + 1) << "dualpipev N=" << N << " rank " << r;
  }
}

}  // namespace
}  // namespace duet::sched
