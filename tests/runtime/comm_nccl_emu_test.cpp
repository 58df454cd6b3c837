// The NCCL communicator's own code (runtime/comm_nccl.cpp) run over host stand-ins of NCCL
// and the CUDA runtime (tests/nccl_emu/nccl_emu.h: ranks are threads, each communicator's
// work runs on its stream, point-to-point untagged and matched in order): every operation
// against values computed by hand, from host memory (staged) and from "device" memory (used
// in place); what NCCL's rules make of a wrong order (a hang that abort ends); unequal
// counts (an error naming the rank). Training over it: TrainLocal.PipelinesOverTheNccl...
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "io/trace.h"
#include "runtime/comm_local.h"
#include "tests/nccl_emu/nccl_emu.h"

using namespace duet::runtime;

namespace {

// n floats of the emulation's device memory.
struct DeviceFloats {
  explicit DeviceFloats(size_t n) : n(n), p((float*)duet::test::emulated_device_alloc(n * sizeof(float))) {}
  ~DeviceFloats() { duet::test::emulated_device_free(p); }
  std::vector<float> host() const { return {p, p + n}; }
  size_t n;
  float* p;
};

Deadline soon() { return Clock::now() + std::chrono::milliseconds(50); }

}  // namespace

TEST(NcclEmulated, EveryOperationAgreesWithHandComputedValues) {
  run_local_ranks(3, [](Communicator& control) {
    auto c = emulated_make_nccl_communicator(control);
    const int me = c->rank(), n = c->size();
    ASSERT_EQ(n, 3);
    EXPECT_FALSE(c->p2p_matches_tags());

    // Point-to-point, 0 <-> 1 in an order both sides share; tags are ignored.
    if (me < 2) {
      DeviceFloats out(2), in(2);
      out.p[0] = 10.0f * me, out.p[1] = 10.0f * me + 1;
      std::vector<float> host_in(2);
      const int peer = 1 - me;
      Request a = me == 0 ? c->isend({out.p, 2}, peer, 5) : c->irecv({in.p, 2}, peer, 6);
      Request b = me == 0 ? c->irecv(host_in, peer, 7) : c->isend({out.p, 2}, peer, 8);
      ASSERT_TRUE(wait(a) && wait(b));
      if (me == 1) EXPECT_EQ(in.host(), (std::vector<float>{0, 1}));
      if (me == 0) EXPECT_EQ(host_in, (std::vector<float>{10, 11}));  // staged through device scratch
    }

    // All-to-all of int32 counts (host memory).
    std::vector<int32_t> a2a(2 * n), got(2 * n);
    for (int q = 0; q < n; ++q) a2a[2 * q] = 100 * me + q, a2a[2 * q + 1] = -me;
    Request r = c->ialltoall(a2a.data(), got.data(), 2);
    ASSERT_TRUE(wait(r));
    for (int q = 0; q < n; ++q) {
      EXPECT_EQ(got[2 * q], 100 * q + me);
      EXPECT_EQ(got[2 * q + 1], -q);
    }

    // All-to-all-v, rank p sends p+q floats to rank q (none from rank 0 to rank 0), in device memory.
    std::vector<int> sc(n), sd(n), rc(n), rd(n);
    for (int q = 0, s = 0, t = 0; q < n; ++q) sc[q] = me + q, sd[q] = s, s += sc[q], rc[q] = q + me, rd[q] = t, t += rc[q];
    DeviceFloats vs(sd[n - 1] + sc[n - 1]), vr(rd[n - 1] + rc[n - 1]);
    for (int q = 0; q < n; ++q)
      for (int i = 0; i < sc[q]; ++i) vs.p[sd[q] + i] = 1000.0f * me + 10.0f * q + i;
    r = c->ialltoallv(vs.p, sc.data(), sd.data(), vr.p, rc.data(), rd.data());
    ASSERT_TRUE(wait(r));
    for (int q = 0; q < n; ++q)
      for (int i = 0; i < rc[q]; ++i) EXPECT_EQ(vr.p[rd[q] + i], 1000.0f * q + 10.0f * me + i) << q << " " << i;

    // Reduce-scatter: equal blocks (one ncclReduceScatter) and unequal ones (grouped reduces).
    for (const std::vector<int>& counts : {std::vector<int>{2, 2, 2}, std::vector<int>{1, 3, 2}}) {
      const int total = std::accumulate(counts.begin(), counts.end(), 0);
      std::vector<float> send(total), mine(counts[me]);
      for (int i = 0; i < total; ++i) send[i] = (float)(i + 1) * (me + 1);
      r = c->ireduce_scatter_sum(send.data(), mine.data(), counts.data());
      ASSERT_TRUE(wait(r));
      const int at = std::accumulate(counts.begin(), counts.begin() + me, 0);
      for (int i = 0; i < counts[me]; ++i) EXPECT_EQ(mine[i], (float)(at + i + 1) * 6) << "block of " << me;
    }

    // All-gather in place: packed equal blocks (ncclAllGather) and gapped unequal ones (broadcasts).
    for (const auto& [counts, displs] : {std::pair<std::vector<int>, std::vector<int>>{{2, 2, 2}, {0, 2, 4}},
                                         std::pair<std::vector<int>, std::vector<int>>{{1, 3, 2}, {0, 2, 6}}}) {
      DeviceFloats buf(8);
      for (int i = 0; i < 8; ++i) buf.p[i] = -1;
      for (int i = 0; i < counts[me]; ++i) buf.p[displs[me] + i] = 10.0f * me + i;
      r = c->iallgatherv_inplace(buf.p, counts.data(), displs.data());
      ASSERT_TRUE(wait(r));
      for (int q = 0; q < n; ++q)
        for (int i = 0; i < counts[q]; ++i) EXPECT_EQ(buf.p[displs[q] + i], 10.0f * q + i);
    }

    // All-reduce of every type and operation, from host memory.
    EXPECT_EQ(c->allreduce<double>(0.5 * me, ReduceOp::Sum), 1.5);
    EXPECT_EQ(c->allreduce<float>((float)me, ReduceOp::Max), 2.0f);
    EXPECT_EQ(c->allreduce<int32_t>(me == 1 ? 0 : 1, ReduceOp::LogicalAnd), 0);
    EXPECT_EQ(c->allreduce<int32_t>(1, ReduceOp::LogicalAnd), 1);
    EXPECT_EQ(c->allreduce<int64_t>((int64_t)me << 40, ReduceOp::Sum), (int64_t)3 << 40);

    // Broadcast (a string: length, then bytes) and a barrier.
    std::string s = me == 1 ? "from rank 1" : "";
    c->broadcast(s, 1);
    EXPECT_EQ(s, "from rank 1");
    c->barrier();

    // Split by parity and duplicate: each is its own communicator with its own order.
    auto half = c->split(me % 2, -me);  // key -me: reversed ranks
    auto twin = c->dup();
    EXPECT_EQ(half->size(), me % 2 == 0 ? 2 : 1);
    if (me % 2 == 0) EXPECT_EQ(half->rank(), me == 0 ? 1 : 0);
    EXPECT_EQ(half->allreduce<int32_t>(me, ReduceOp::Sum), me % 2 == 0 ? 2 : 1);
    EXPECT_EQ(twin->allreduce<int32_t>(me, ReduceOp::Sum), 3);
    EXPECT_FALSE(twin->p2p_matches_tags());
  });
}

// Both ranks send first: each send occupies its stream until met, and the receives queue
// behind them — NCCL's deadlock. The deadline returns, abort ends it, and nothing hangs.
TEST(NcclEmulated, SendsBothSidesIssueFirstHangUntilAbortEndsThem) {
  run_local_ranks(2, [](Communicator& control) {
    auto c = emulated_make_nccl_communicator(control);
    const int peer = 1 - c->rank();
    DeviceFloats out(4), in(4);
    Request s = c->isend({out.p, 4}, peer, 0);
    Request r = c->irecv({in.p, 4}, peer, 0);
    EXPECT_FALSE(wait(s, soon()));
    EXPECT_FALSE(wait(r, soon()));
    control.barrier();  // both have seen the hang
    emulated_abort_nccl_communicator(*c);
    EXPECT_TRUE(wait(s, soon()) && wait(r, soon()));
    EXPECT_THROW(c->isend({out.p, 4}, peer, 0), std::runtime_error);
  });
}

// Unequal counts are NCCL's undefined case; here an asynchronous error that test() raises,
// naming the rank. The rank's NCCL communicators are then aborted (in this process of
// thread-ranks: all of them), so nothing waits on them: every later wait and operation raises
// the error too — a receive never counts as done with undefined contents.
TEST(NcclEmulated, UnequalCountsAreAnErrorThatEndsEveryCommunicator) {
  run_local_ranks(2, [](Communicator& control) {
    auto c = emulated_make_nccl_communicator(control);
    auto other = c->dup();
    DeviceFloats buf(4), more(4);
    Request pending = other->irecv({more.p, 4}, 1 - c->rank(), 0);  // never sent
    Request op;
    try {  // raised by the wait, or already by the call when the peer got there first
      op = c->rank() == 0 ? c->isend({buf.p, 3}, 1, 0) : c->irecv({buf.p, 4}, 0, 0);
      wait(op);
      ADD_FAILURE() << "unequal counts went unnoticed";
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(": NCCL: invalid usage (a send of 12 bytes met a receive of 16)"), std::string::npos) << what;
      EXPECT_NE(what.find("rank "), std::string::npos) << what;
    }
    if (op.pending()) EXPECT_THROW(wait(op, soon()), std::runtime_error);  // again, at once
    EXPECT_THROW(wait(pending, soon()), std::runtime_error);  // the other communicator too
    EXPECT_THROW(c->ibarrier(), std::runtime_error);
  });  // the requests' destructors return: their operations ended
}

namespace {

// The NCCL-stream events of a trace file: (name, start µs, length µs).
struct Span {
  std::string name;
  double ts, dur;
};
std::vector<Span> nccl_stream_spans(const std::string& path) {
  std::ifstream f(path);
  std::stringstream text;
  text << f.rdbuf();
  const std::string s = text.str();
  const std::regex event(R"re(\{"name":"([^"]*)","cat":"[a-z0-9]+","ph":"X","pid":\d+,"tid":6,"ts":([-0-9.e]+),"dur":([-0-9.e]+))re");
  std::vector<Span> out;
  for (auto it = std::sregex_iterator(s.begin(), s.end(), event); it != std::sregex_iterator(); ++it)
    out.push_back({(*it)[1], std::stod((*it)[2]), std::stod((*it)[3])});
  return out;
}

double now_us() { return duet::io::TraceRecorder::now() * 1e6; }

}  // namespace

// A traced NCCL communicator records each operation on the trace's GPU row for NCCL streams,
// in the host's clock (placed through an anchor event), from its stream reaching it to its
// end; a duplicate made while traced is traced too; set_trace(nullptr) stops it.
TEST(NcclEmulated, ATracedCommunicatorPutsItsOperationsOnTheGpuRow) {
  const std::string dir = testing::TempDir() + "nccl_trace_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const double before = now_us();
  run_local_ranks(2, [&](Communicator& control) {
    auto c = emulated_make_nccl_communicator(control);
    const int me = c->rank();
    duet::io::TraceRecorder trace(dir + "/rank" + std::to_string(me) + ".json", me);
    c->set_trace(&trace);
    auto channel = c->dup();
    DeviceFloats buf(1000);
    Request r = me == 0 ? channel->isend({buf.p, buf.n}, 1, 0) : channel->irecv({buf.p, buf.n}, 0, 0);
    ASSERT_TRUE(wait(r));
    int32_t one = 1;
    Request sum = c->iallreduce(&one, 1, DType::I32, ReduceOp::Sum);
    ASSERT_TRUE(wait(sum));
    EXPECT_EQ(one, 2);
    c->set_trace(nullptr);
    Request untraced = c->iallreduce(&one, 1, DType::I32, ReduceOp::Sum);
    ASSERT_TRUE(wait(untraced));
    trace.close();
  });
  const double after = now_us();
  for (int me = 0; me < 2; ++me) {
    const auto spans = nccl_stream_spans(dir + "/rank" + std::to_string(me) + ".json");
    ASSERT_EQ(spans.size(), 2u) << "rank " << me;  // the point-to-point and the first all-reduce
    EXPECT_EQ(spans[0].name, me == 0 ? "ncclSend to 1" : "ncclRecv from 0");
    EXPECT_EQ(spans[1].name, "all-reduce");
    for (const auto& s : spans) {
      EXPECT_GE(s.dur, 0.0) << s.name;
      EXPECT_GE(s.ts, before - 1000) << s.name;  // the anchor's placement: off by microseconds, not more
      EXPECT_LE(s.ts + s.dur, after + 1000) << s.name;
    }
    EXPECT_LE(spans[0].ts + spans[0].dur, spans[1].ts + 1000);  // in stream order
  }
  std::filesystem::remove_all(dir);
}
