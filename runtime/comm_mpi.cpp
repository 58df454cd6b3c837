#include "runtime/comm_mpi.h"

#include <mpi.h>

#include "runtime/mpi.h"

namespace duet::runtime {

namespace {

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I32: return MPI_INT32_T;
    case DType::I64: return MPI_INT64_T;
    case DType::Byte: return MPI_BYTE;
  }
  fatal("unknown DType");
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::LogicalAnd: return MPI_LAND;
  }
  fatal("unknown ReduceOp");
}

class MpiRequest final : public RequestState {
 public:
  MPI_Request req = MPI_REQUEST_NULL;
  bool test() override {
    int done = 0;
    MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    return done != 0;
  }
};

// Posts one MPI operation that fills an MPI_Request.
template <class Post>
Request post(Post&& p) {
  auto s = std::make_unique<MpiRequest>();
  p(&s->req);
  return Request(std::move(s));
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm c, bool owned) : comm_(c), owned_(owned) {
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~MpiCommunicator() override {
    int fin = 0;
    MPI_Finalized(&fin);
    if (owned_ && !fin) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  Request isend(std::span<const float> buf, int peer, int tag) override {
    return post([&](MPI_Request* r) { MPI_CHECK(MPI_Isend(buf.data(), (int)buf.size(), MPI_FLOAT, peer, tag, comm_, r)); });
  }
  Request irecv(std::span<float> buf, int peer, int tag) override {
    return post([&](MPI_Request* r) { MPI_CHECK(MPI_Irecv(buf.data(), (int)buf.size(), MPI_FLOAT, peer, tag, comm_, r)); });
  }
  Request ialltoall(const int32_t* send, int32_t* recv, int count) override {
    return post([&](MPI_Request* r) {
      MPI_CHECK(MPI_Ialltoall(send, count, MPI_INT32_T, recv, count, MPI_INT32_T, comm_, r));
    });
  }
  Request ialltoallv(const float* send, const int* send_counts, const int* send_displs, float* recv,
                     const int* recv_counts, const int* recv_displs) override {
    return post([&](MPI_Request* r) {
      MPI_CHECK(MPI_Ialltoallv(send, send_counts, send_displs, MPI_FLOAT, recv, recv_counts, recv_displs, MPI_FLOAT,
                               comm_, r));
    });
  }
  Request ireduce_scatter_sum(const float* send, float* recv, const int* counts) override {
    return post([&](MPI_Request* r) { MPI_CHECK(MPI_Ireduce_scatter(send, recv, counts, MPI_FLOAT, MPI_SUM, comm_, r)); });
  }
  Request iallgatherv_inplace(float* buf, const int* counts, const int* displs) override {
    return post([&](MPI_Request* r) {
      MPI_CHECK(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, buf, counts, displs, MPI_FLOAT, comm_, r));
    });
  }
  Request iallreduce(void* buf, int count, DType type, ReduceOp op) override {
    return post([&](MPI_Request* r) {
      MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, count, mpi_type(type), mpi_op(op), comm_, r));
    });
  }
  void allreduce_inplace(void* buf, int count, DType type, ReduceOp op) override {
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, count, mpi_type(type), mpi_op(op), comm_));
  }
  Request ibroadcast(void* buf, int count, DType type, int root) override {
    return post([&](MPI_Request* r) { MPI_CHECK(MPI_Ibcast(buf, count, mpi_type(type), root, comm_, r)); });
  }
  Request ibarrier() override {
    return post([&](MPI_Request* r) { MPI_CHECK(MPI_Ibarrier(comm_, r)); });
  }
  std::unique_ptr<Communicator> dup() override {
    MPI_Comm c;
    MPI_CHECK(MPI_Comm_dup(comm_, &c));
    return std::make_unique<MpiCommunicator>(c, true);
  }
  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm c;
    MPI_CHECK(MPI_Comm_split(comm_, color, key, &c));
    return std::make_unique<MpiCommunicator>(c, true);
  }

 private:
  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Communicator> mpi_world() { return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false); }

}  // namespace duet::runtime
