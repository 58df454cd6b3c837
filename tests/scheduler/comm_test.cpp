// Point-to-point communication derived from placement.
#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "scheduler/comm.h"

namespace duet::sched {
namespace {

// Every send must meet exactly one receive at the peer, with the same data kind and
// micro-batch and swapped ranks/directions; and vice versa.
void expect_sends_match_receives(const Schedule& s) {
  auto comm = derive_comm(s);
  using Key = std::tuple<bool, int, int, int, int, int>;  // gradient?, from, from dir, to, to dir, mb
  std::map<Key, int> sends, recvs;
  for (int r = 0; r < s.ranks; ++r) {
    for (const CommOp& c : comm[r]) {
      bool grad = c.kind == CommKind::SendGradient || c.kind == CommKind::RecvGradient;
      if (c.is_send())
        sends[{grad, r, c.dir, c.peer, c.peer_dir, c.microbatch}]++;
      else
        recvs[{grad, c.peer, c.peer_dir, r, c.dir, c.microbatch}]++;
      EXPECT_NE(c.peer, r) << "local transfers are not messages";
    }
  }
  EXPECT_EQ(sends, recvs);
  for (auto& [k, n] : sends) EXPECT_EQ(n, 1);
}

TEST(DeriveComm, SendsAndReceivesMatchForEveryKind) {
  expect_sends_match_receives(make_1f1b_schedule(4, 8));
  expect_sends_match_receives(make_zb1p_schedule(5, 7));
  expect_sends_match_receives(make_dualpipe_schedule(8, 20));
  expect_sends_match_receives(make_dualpipev_schedule(4, 10));
}

TEST(DeriveComm, MessageCounts) {
  // 1F1B: each of N-1 boundaries carries M activations and M gradients, seen at both ends.
  auto c = derive_comm(make_1f1b_schedule(4, 8));
  size_t total = 0;
  for (auto& v : c) total += v.size();
  EXPECT_EQ(total, 2u * 3 * 8 * 2);
  // DualPipe: two pipelines of N-1 boundaries with C/2 micro-batches each.
  auto d = derive_comm(make_dualpipe_schedule(4, 12));
  total = 0;
  for (auto& v : d) total += v.size();
  EXPECT_EQ(total, 2u * (2 * 3 * 6) * 2);
  // DualPipeV: 2N-1 boundaries of which one (the turn) is local.
  auto v = derive_comm(make_dualpipev_schedule(4, 8));
  total = 0;
  for (auto& x : v) total += x.size();
  EXPECT_EQ(total, 2u * (2 * 4 - 2) * 8 * 2);
}

TEST(DeriveComm, DualPipeFirstOpsOfRankOne) {
  // DualPipe N=4, rank 1: F0:0 receives from rank 0 and sends to rank 2.
  auto comm = derive_comm(make_dualpipe_schedule(4, 8));
  ASSERT_GE(comm[1].size(), 2u);
  EXPECT_EQ(comm[1][0], (CommOp{CommKind::RecvActivation, 0, 0, 0, 0, 0}));
  EXPECT_EQ(comm[1][1], (CommOp{CommKind::SendActivation, 2, 0, 0, 0, 0}));
  // Rank 0 has no input activation for direction 0 (it reads data): its first message is a send.
  EXPECT_EQ(comm[0][0], (CommOp{CommKind::SendActivation, 1, 0, 0, 0, 0}));
}

TEST(DeriveComm, PairsCarryBothHalves) {
  // DualPipe N=4 C=8 rank 0, op 7 is F0:3&B1:1: receive activation? no (first stage of dir 0),
  // receive gradient of dir 1 from rank 1, send activation to rank 1, no gradient out (rank 0
  // is dir 1's last stage: its backward starts from the loss).
  Schedule s = make_dualpipe_schedule(4, 8);
  ASSERT_EQ(format_op(s.ops[0][7]), "F0:3&B1:1");
  OpIo io = op_io(s.placement(), 0, s.ops[0][7]);
  EXPECT_EQ(io.num_inputs, 0);  // dir 1 at rank 0 is the last stage: no gradient to wait for
  EXPECT_EQ(io.num_outputs, 2);
  EXPECT_EQ(io.outputs[0].kind, DataKind::Activation);
  EXPECT_EQ(io.outputs[0].to, (Slot{1, 0}));
  EXPECT_EQ(io.outputs[1].kind, DataKind::Gradient);
  EXPECT_EQ(io.outputs[1].to, (Slot{1, 1}));
  EXPECT_EQ(io.outputs[1].microbatch, 1);
}

TEST(DeriveComm, DualPipeVTurnIsLocal) {
  Schedule s = make_dualpipev_schedule(3, 6);
  auto comm = derive_comm(s);
  for (const CommOp& c : comm[2]) EXPECT_NE(c.peer, 2);
  // The turn exists as a local transfer in op_io.
  Op f1{OpKind::F, 1, 0};
  OpIo io = op_io(s.placement(), 2, f1);
  ASSERT_EQ(io.num_inputs, 1);
  EXPECT_TRUE(io.inputs[0].local());
  EXPECT_EQ(io.inputs[0].from, (Slot{2, 0}));
}

TEST(DeriveComm, TagsAreUniquePerPairOfRanks) {
  Schedule s = make_dualpipe_schedule(6, 16);
  auto comm = derive_comm(s);
  for (int r = 0; r < s.ranks; ++r) {
    std::map<std::pair<int, int>, int> seen;  // (peer, tag) of receives
    for (const CommOp& c : comm[r]) {
      if (c.is_send()) continue;
      int tag = comm_tag(c, s.microbatches_per_dir());
      EXPECT_GE(tag, 0);
      EXPECT_LT(tag, 4 * s.microbatches_per_dir());
      EXPECT_EQ((seen[{c.peer, tag}]++), 0) << format_comm(c);
    }
    // The sender computes the receiver's tag.
    for (const CommOp& c : comm[r]) {
      if (!c.is_send()) continue;
      CommOp as_recv = c;
      as_recv.kind = c.kind == CommKind::SendActivation ? CommKind::RecvActivation : CommKind::RecvGradient;
      std::swap(as_recv.dir, as_recv.peer_dir);
      EXPECT_EQ(comm_tag(c, s.microbatches_per_dir()), comm_tag(as_recv, s.microbatches_per_dir()));
    }
  }
}

}  // namespace
}  // namespace duet::sched
