// The communication interface, run on its in-process implementation (ranks as threads):
// every operation the engine, ZeRO and the trainer use, with results computed by hand, and
// waits that return at their deadline instead of hanging.
#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <vector>

#include "runtime/comm.h"
#include "runtime/comm_local.h"

using namespace duet::runtime;

TEST(LocalComm, PointToPointMatchesBySourceAndTagInOrder) {
  run_local_ranks(2, [](Communicator& c) {
    if (c.rank() == 0) {
      const std::vector<float> a = {1, 2}, b = {3, 4}, x = {9};
      Request r1 = c.isend(a, 1, 7), r2 = c.isend(b, 1, 7), r3 = c.isend(x, 1, 5);
      std::vector<Request> none;
      EXPECT_TRUE(wait_all(none));  // nothing to wait for is done
    } else {
      std::vector<float> x(1), first(2), second(2);
      Request rx = c.irecv(x, 0, 5);  // a later tag can be received first
      Request r1 = c.irecv(first, 0, 7);
      Request r2 = c.irecv(second, 0, 7);
      std::vector<Request> all;
      all.push_back(std::move(rx)), all.push_back(std::move(r1)), all.push_back(std::move(r2));
      EXPECT_TRUE(wait_all(all));
      EXPECT_EQ(x, std::vector<float>{9});
      EXPECT_EQ(first, (std::vector<float>{1, 2}));  // same source and tag: in send order
      EXPECT_EQ(second, (std::vector<float>{3, 4}));
    }
  });
}

TEST(LocalComm, WaitReturnsAtItsDeadline) {
  run_local_ranks(2, [](Communicator& c) {
    if (c.rank() == 1) {
      std::vector<float> buf(1);
      Request r = c.irecv(buf, 0, 3);
      const auto t0 = Clock::now();
      EXPECT_FALSE(wait(r, t0 + std::chrono::milliseconds(20)));  // nobody has sent yet
      EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(20));
      EXPECT_TRUE(r.pending());
      c.barrier();  // now rank 0 sends
      EXPECT_TRUE(wait(r));
      EXPECT_EQ(buf[0], 42.0f);
    } else {
      c.barrier();
      const std::vector<float> v = {42};
      Request s = c.isend(v, 1, 3);
    }
  });
}

TEST(LocalComm, AllToAllAndAllToAllV) {
  run_local_ranks(3, [](Communicator& c) {
    const int me = c.rank(), n = c.size();
    std::vector<int32_t> send(2 * n), recv(2 * n);
    for (int q = 0; q < n; ++q) send[2 * q] = 100 * me + q, send[2 * q + 1] = -me;
    Request r = c.ialltoall(send.data(), recv.data(), 2);
    ASSERT_TRUE(wait(r));
    for (int p = 0; p < n; ++p) {
      EXPECT_EQ(recv[2 * p], 100 * p + me);
      EXPECT_EQ(recv[2 * p + 1], -p);
    }
    // Rank p sends p+1 floats of value p·10+q to rank q.
    std::vector<int> sc(n, me + 1), sd(n), rc(n), rd(n);
    for (int q = 0; q < n; ++q) sd[q] = q * (me + 1), rc[q] = q + 1;
    std::partial_sum(rc.begin(), rc.end() - 1, rd.begin() + 1);
    std::vector<float> sv(n * (me + 1)), rv(rd.back() + rc.back());
    for (int q = 0; q < n; ++q)
      for (int k = 0; k <= me; ++k) sv[sd[q] + k] = 10.0f * me + q;
    Request v = c.ialltoallv(sv.data(), sc.data(), sd.data(), rv.data(), rc.data(), rd.data());
    ASSERT_TRUE(wait(v));
    for (int p = 0; p < n; ++p)
      for (int k = 0; k <= p; ++k) EXPECT_EQ(rv[rd[p] + k], 10.0f * p + me);
  });
}

TEST(LocalComm, ReduceScatterAllGatherAllReduceBroadcast) {
  run_local_ranks(4, [](Communicator& c) {
    const int me = c.rank(), n = c.size();
    const std::vector<int> counts = {1, 2, 0, 3};
    std::vector<int> displs(n, 0);
    std::partial_sum(counts.begin(), counts.end() - 1, displs.begin() + 1);
    std::vector<float> grads(6);
    for (int i = 0; i < 6; ++i) grads[i] = (float)(i + 1) * (me + 1);  // Σ over ranks = 10·(i+1)
    std::vector<float> shard(counts[me]);
    Request r = c.ireduce_scatter_sum(grads.data(), shard.data(), counts.data());
    ASSERT_TRUE(wait(r));
    for (int k = 0; k < counts[me]; ++k) EXPECT_EQ(shard[k], 10.0f * (displs[me] + k + 1));
    std::vector<float> params(6, -1);
    for (int k = 0; k < counts[me]; ++k) params[displs[me] + k] = shard[k];
    Request g = c.iallgatherv_inplace(params.data(), counts.data(), displs.data());
    ASSERT_TRUE(wait(g));
    for (int i = 0; i < 6; ++i) EXPECT_EQ(params[i], 10.0f * (i + 1));
    EXPECT_EQ(c.allreduce<double>(me + 0.5, ReduceOp::Sum), 8.0);
    EXPECT_EQ(c.allreduce<int64_t>(me * 7, ReduceOp::Max), 21);
    EXPECT_EQ(c.allreduce<int32_t>(me != 2, ReduceOp::LogicalAnd), 0);
    std::string s = me == 1 ? "run dir" : "";
    c.broadcast(s, 1);
    EXPECT_EQ(s, "run dir");
  });
}

TEST(LocalComm, SubgroupsAndDuplicatesKeepTheirOwnOrder) {
  run_local_ranks(4, [](Communicator& world) {
    const int me = world.rank();
    // {0, 2} and {3, 1}: ranked by position in the member list.
    const std::vector<int> members = me % 2 == 0 ? std::vector<int>{0, 2} : std::vector<int>{3, 1};
    auto g = subgroup(world, members);
    EXPECT_EQ(g->size(), 2);
    EXPECT_EQ(g->rank(), (int)(std::find(members.begin(), members.end(), me) - members.begin()));
    auto d = g->dup();
    // Collectives on g and its duplicate are independent streams: issue them in opposite
    // orders on the two members; each completes with its own partner.
    double a = me, b = 100 + me;
    if (g->rank() == 0) {
      Request ra = g->iallreduce(&a, 1, DType::F64, ReduceOp::Sum), rb = d->iallreduce(&b, 1, DType::F64, ReduceOp::Sum);
      ASSERT_TRUE(wait(ra) && wait(rb));
    } else {
      Request rb = d->iallreduce(&b, 1, DType::F64, ReduceOp::Sum), ra = g->iallreduce(&a, 1, DType::F64, ReduceOp::Sum);
      ASSERT_TRUE(wait(rb) && wait(ra));
    }
    EXPECT_EQ(a, me % 2 == 0 ? 2.0 : 4.0);
    EXPECT_EQ(b, me % 2 == 0 ? 202.0 : 204.0);
  });
}

TEST(LocalComm, AnExceptionInARankReachesTheCaller) {
  EXPECT_THROW(run_local_ranks(2, [](Communicator& c) {
                 if (c.rank() == 1) throw std::runtime_error("rank 1 failed");
               }),
               std::runtime_error);
}

// The ordered mode checks code written for NCCL's point-to-point (runtime/comm.h): tags are
// ignored, the n-th send meets the n-th receive, a send waits for its receive, one rank's
// operations on one communicator run one at a time, and counts must agree.
TEST(LocalComm, OrderedModeFollowsNcclsPointToPointRules) {
  run_local_ranks(3, [](Communicator& c) {
    auto o = ordered_p2p_dup(c);
    EXPECT_TRUE(c.p2p_matches_tags());
    EXPECT_FALSE(o->p2p_matches_tags());
    EXPECT_FALSE(o->dup()->p2p_matches_tags());  // its duplicates keep the rules
    const auto soon = [] { return Clock::now() + std::chrono::milliseconds(20); };
    const int me = c.rank();

    // Tags do not match: the first send meets the first receive.
    if (me == 0) {
      const std::vector<float> a = {1, 2}, b = {3, 4};
      Request r1 = o->isend(a, 1, 7), r2 = o->isend(b, 1, 8);
      EXPECT_TRUE(wait(r1) && wait(r2));
    } else if (me == 1) {
      std::vector<float> x(2), y(2);
      Request rx = o->irecv(x, 0, 8), ry = o->irecv(y, 0, 7);
      EXPECT_TRUE(wait(rx) && wait(ry));
      EXPECT_EQ(x, (std::vector<float>{1, 2}));
      EXPECT_EQ(y, (std::vector<float>{3, 4}));
    }
    c.barrier();

    // A send is not done before its receive is posted (no buffering), and a rank's second
    // operation does not start before its first is done (rank 2's receive waits for rank 0's
    // send, which waits behind rank 0's receive from rank 1).
    std::vector<float> v = {5};
    if (me == 0) {
      Request in = o->irecv(v, 1, 0);
      const std::vector<float> w = {6};
      Request out = o->isend(w, 2, 0);
      c.barrier();                      // rank 2's receive is posted
      EXPECT_FALSE(wait(out, soon()));  // but this send waits behind the receive from rank 1
      c.barrier();                      // now rank 1 sends
      EXPECT_TRUE(wait(in) && wait(out));
      EXPECT_EQ(v[0], 7.0f);
    } else if (me == 2) {
      Request in = o->irecv(v, 0, 0);
      c.barrier();
      EXPECT_FALSE(wait(in, soon()));
      c.barrier();
      EXPECT_TRUE(wait(in));
      EXPECT_EQ(v[0], 6.0f);
    } else {
      c.barrier();
      c.barrier();
      const std::vector<float> w = {7};
      Request out = o->isend(w, 0, 0);
      EXPECT_TRUE(wait(out));
    }
    c.barrier();

    // Unequal counts are an error (both operations end, so no rank hangs).
    if (me == 0) {
      const std::vector<float> three = {1, 2, 3};
      Request r = o->isend(three, 1, 0);
      c.barrier();
      EXPECT_TRUE(wait(r));
    } else if (me == 1) {
      c.barrier();
      std::vector<float> four(4);
      EXPECT_THROW(o->irecv(four, 0, 0), std::logic_error);
    } else {
      c.barrier();
    }
  });
}
