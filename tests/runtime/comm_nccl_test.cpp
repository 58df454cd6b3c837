// The NCCL data plane (runtime/comm_nccl.h). Without a GPU only the refusal runs; the GPU
// cases skip visibly. On one GPU a communicator has one rank (NCCL refuses two ranks on one
// device): these cases check initialisation over a control communicator, every collective
// from host memory (staged) and from the backend's device memory, duplicates, and that a
// receive nobody sends ends with abort() instead of hanging. The engine's message order over
// NCCL's point-to-point rules is checked on CPUs (TrainLocal.PipelinesOverATaglessDataPlane...).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/backend.h"
#include "runtime/comm_local.h"
#include "runtime/comm_nccl.h"

using namespace duet::runtime;

namespace {

// Device memory of the CUDA backend (managed), freed at scope end.
struct DeviceFloats {
  explicit DeviceFloats(size_t n) : n(n), p((float*)duet::kernels::cuda_backend()->alloc(n * sizeof(float))) {}
  ~DeviceFloats() { duet::kernels::cuda_backend()->free(p); }
  size_t n;
  float* p;
};

}  // namespace

TEST(NcclComm, WithoutAGpuItSaysWhy) {
  const std::string why = nccl_absent_reason();
  if (why.empty()) GTEST_SKIP() << "a GPU is visible here: the refusal does not apply";
  run_local_ranks(1, [&](Communicator& c) {
    try {
      make_nccl_communicator(c);
      ADD_FAILURE() << "made an NCCL communicator although: " << why;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  });
}

TEST(NcclComm, OneRankOnTheGpuRunsEveryCollective) {
  const std::string why = nccl_absent_reason();
  if (!why.empty()) GTEST_SKIP() << "NCCL absent: " << why;
  if (!duet::kernels::cuda_backend()) GTEST_SKIP() << "cuda backend absent: " << duet::kernels::cuda_backend_absent_reason();
  run_local_ranks(1, [](Communicator& control) {
    auto c = make_nccl_communicator(control);
    EXPECT_FALSE(c->p2p_matches_tags());
    EXPECT_EQ(c->rank(), 0);
    EXPECT_EQ(c->size(), 1);

    // Host memory, staged through device scratch.
    std::vector<double> d = {1.5, -2};
    c->allreduce(std::span<double>(d), ReduceOp::Sum);
    EXPECT_EQ(d, (std::vector<double>{1.5, -2}));
    EXPECT_EQ(c->allreduce<int32_t>(7, ReduceOp::Max), 7);
    std::string s = "control over data";
    c->broadcast(s, 0);
    EXPECT_EQ(s, "control over data");
    c->barrier();
    std::vector<int32_t> a2a_in = {4, 5}, a2a_out(2);
    Request r = c->ialltoall(a2a_in.data(), a2a_out.data(), 2);
    ASSERT_TRUE(wait(r));
    EXPECT_EQ(a2a_out, a2a_in);

    // Device memory (the backend's), used in place.
    DeviceFloats x(6), y(6);
    for (int i = 0; i < 6; ++i) x.p[i] = (float)i;
    const int counts[] = {6}, displs[] = {0};
    r = c->ialltoallv(x.p, counts, displs, y.p, counts, displs);
    ASSERT_TRUE(wait(r));
    for (int i = 0; i < 6; ++i) EXPECT_EQ(y.p[i], (float)i);
    r = c->ireduce_scatter_sum(x.p, y.p, counts);
    ASSERT_TRUE(wait(r));
    EXPECT_EQ(y.p[5], 5.0f);
    r = c->iallgatherv_inplace(y.p, counts, displs);
    ASSERT_TRUE(wait(r));
    EXPECT_EQ(y.p[3], 3.0f);

    auto twin = c->dup();  // its own NCCL communicator and stream
    EXPECT_FALSE(twin->p2p_matches_tags());
    EXPECT_EQ(twin->allreduce<int64_t>(int64_t(1) << 40, ReduceOp::Sum), int64_t(1) << 40);
  });
}

TEST(NcclComm, AReceiveNobodySendsEndsWithAbortNotAHang) {
  const std::string why = nccl_absent_reason();
  if (!why.empty()) GTEST_SKIP() << "NCCL absent: " << why;
  if (!duet::kernels::cuda_backend()) GTEST_SKIP() << "cuda backend absent: " << duet::kernels::cuda_backend_absent_reason();
  run_local_ranks(1, [](Communicator& control) {
    auto c = make_nccl_communicator(control);
    DeviceFloats buf(16);
    Request r = c->irecv({buf.p, buf.n}, 0, 0);  // from itself, never sent
    EXPECT_FALSE(wait(r, Clock::now() + std::chrono::milliseconds(500)));  // the deadline returns
    abort_nccl_communicator(*c);
    EXPECT_TRUE(wait(r, Clock::now() + std::chrono::seconds(30)));  // and nothing waits forever
    EXPECT_THROW(c->ibarrier(), std::runtime_error);  // a dead communicator says so
  });
}
