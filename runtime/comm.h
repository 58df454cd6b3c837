#pragma once
// The communication interface: every message and collective of a training run goes through
// a Communicator (one group of ranks). Implementations:
//   runtime/comm_mpi.h      Open MPI (the default; the only file set that calls MPI_*
//                           besides the process bootstrap in runtime/mpi.h)
//   runtime/comm_local.h    ranks as threads of one process, for unit tests without mpirun
//   (NCCL on GPUs is the second real one.)
//
// Everything is non-blocking and returns a Request. A request pins its buffers: they must
// stay valid and untouched until the request completes (the same contract as MPI's); a
// request that is destroyed unfinished is waited for in its destructor (never throws), so a
// buffer is never written after its owner freed it. test() and the waits may throw when the
// implementation failed (NCCL: a communicator error); the operation has then ended. Waiting takes a deadline and returns
// false when it passes, so a hang can be noticed and reported instead of sitting forever.
//
// Collectives on one communicator must be issued in the same order on every member (as in
// MPI); give concurrent streams of collectives their own communicator (dup()).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace duet::io {
class TraceRecorder;
}

namespace duet::runtime {

enum class DType { F32, F64, I32, I64, Byte };
enum class ReduceOp { Sum, Max, LogicalAnd };

// Bytes per value of `t`.
constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::Byte: return 1;
  }
  return 0;
}

template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<std::byte>() { return DType::Byte; }

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
constexpr Deadline kNoDeadline = Deadline::max();

// The state of one non-blocking operation, implemented by each Communicator.
class RequestState {
 public:
  virtual ~RequestState() = default;
  // Makes progress; true once the operation has completed (then its buffers are free).
  virtual bool test() = 0;
};

// A handle of one non-blocking operation (movable, not copyable). An empty request is done.
class Request {
 public:
  Request() = default;
  explicit Request(std::unique_ptr<RequestState> s) : s_(std::move(s)) {}
  Request(Request&&) noexcept = default;
  Request& operator=(Request&& o) noexcept;
  ~Request();
  // True once complete; then the handle is empty.
  bool test();
  bool pending() const { return s_ != nullptr; }

 private:
  std::unique_ptr<RequestState> s_;
};

// Tests every request once; true when all are complete.
bool test_all(std::span<Request> reqs);
// Waits until every request is complete (true) or `deadline` passes (false; the unfinished
// ones stay pending). Never spins: tests, then sleeps 5 µs doubling to 200 µs — ranks share
// cores, and a waiting rank must leave its core to the ones computing.
bool wait_all(std::span<Request> reqs, Deadline deadline = kNoDeadline);
inline bool wait(Request& r, Deadline deadline = kNoDeadline) { return wait_all({&r, 1}, deadline); }

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // ---- point-to-point (float payloads: activations and their gradients) ----
  // True (MPI, in-process): a receive takes the first message from `peer` with its tag, and
  // a send may complete before its receive is posted. False (NCCL, and the in-process
  // ordered mode that checks code written for it): tags are ignored, the n-th send to a peer
  // meets that peer's n-th receive from this rank, counts must be equal, a send completes
  // only once met, and a rank's operations on one communicator run one after another in the
  // order issued (one stream) — so code must issue them in an order both sides derive.
  virtual bool p2p_matches_tags() const { return true; }
  // A communicator whose operations run on a device (NCCL) records each of them in `trace`
  // from now on, as a span of GPU time (io::TraceThread::NcclStreams); so do the communicators
  // dup() and split() make from it afterwards. nullptr stops it. Host communicators (MPI,
  // in-process) ignore it: their operations are the host's, traced where they are waited for.
  // `trace` must outlive the operations issued while it is set.
  virtual void set_trace(io::TraceRecorder* /*trace*/) {}
  virtual Request isend(std::span<const float> buf, int peer, int tag) = 0;
  virtual Request irecv(std::span<float> buf, int peer, int tag) = 0;

  // Sends ordered after device work (NCCL): mark_device_work() marks how far the calling
  // thread's device stream has got, and isend_after(…, mark) — from any thread, later — starts
  // the send on the device once that work is done: the producer need not wait for its kernels
  // on the host. Host communicators (MPI, in-process) read host memory, so their producer
  // waits for its kernels anyway: orders_sends_by_device() is false, the mark empty, and
  // isend_after is isend.
  using DeviceMark = std::shared_ptr<void>;
  virtual bool orders_sends_by_device() const { return false; }
  virtual DeviceMark mark_device_work() { return nullptr; }
  virtual Request isend_after(std::span<const float> buf, int peer, int tag, const DeviceMark& /*after*/) {
    return isend(buf, peer, tag);
  }

  // ---- collectives (every member calls them, in the same order) ----
  // recv[q·count .. (q+1)·count) ← member q's send[me·count ..]
  virtual Request ialltoall(const int32_t* send, int32_t* recv, int count) = 0;
  // Variable rows: counts and displacements in floats, per member.
  virtual Request ialltoallv(const float* send, const int* send_counts, const int* send_displs, float* recv,
                             const int* recv_counts, const int* recv_displs) = 0;
  // Sums `send` (Σ counts floats) over the members; member q gets elements of its block
  // [Σ_{p<q} counts[p], + counts[q]) in recv.
  virtual Request ireduce_scatter_sum(const float* send, float* recv, const int* counts) = 0;
  // In place: member q's block buf[displs[q] .. + counts[q]) goes to every member.
  virtual Request iallgatherv_inplace(float* buf, const int* counts, const int* displs) = 0;
  // In place over `count` values of `type`.
  virtual Request iallreduce(void* buf, int count, DType type, ReduceOp op) = 0;
  virtual Request ibroadcast(void* buf, int count, DType type, int root) = 0;
  virtual Request ibarrier() = 0;

  // ---- new communicators (collective over this one) ----
  // A duplicate: the same members, its own ordering of collectives.
  virtual std::unique_ptr<Communicator> dup() = 0;
  // Members with equal color form a communicator, ranked by key (then by rank here).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Blocking, in place, no deadline. Not iallreduce + wait: MPI's blocking and non-blocking
  // all-reduce may add in different orders, and the training reductions (gradient norm,
  // losses) keep the bits they always had.
  virtual void allreduce_inplace(void* buf, int count, DType type, ReduceOp op) = 0;

  // ---- blocking conveniences ----
  template <class T>
  void allreduce(std::span<T> buf, ReduceOp op) {
    allreduce_inplace(buf.data(), (int)buf.size(), dtype_of<T>(), op);
  }
  template <class T>
  T allreduce(T value, ReduceOp op) {
    allreduce(std::span<T>(&value, 1), op);
    return value;
  }
  void barrier() {
    Request r = ibarrier();
    wait(r);
  }
  void broadcast(std::string& s, int root);  // s resized on the receivers
};

// Makes the data-plane communicator of a group from its control-plane one (collective over
// the group): NCCL on GPUs (runtime/comm_nccl.h), or comm_local.h's ordered mode in tests.
using DataPlane = std::function<std::unique_ptr<Communicator>(Communicator& group)>;

// A communicator of exactly `members` (ranks of `parent`, in that order). Collective over
// `parent`: every member calls it with the group it belongs to.
std::unique_ptr<Communicator> subgroup(Communicator& parent, const std::vector<int>& members);

}  // namespace duet::runtime
